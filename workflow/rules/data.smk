# Raw data and prepared splits. `data.<dataset>.source` picks the replica / synthetic
# generator (offline) or the real download; the prepared splits downstream are the same.


if CMD["source"] == "replica":

    rule make_mdsprites:
        output:
            TFRECORD,
        params:
            n=CMD["replica"]["n"],
            seed=CMD["replica"]["seed"],
        conda:
            ENV
        log:
            "logs/data/make_mdsprites.log",
        benchmark:
            "logs/bench/data/make_mdsprites.tsv"
        priority: 50  # the ColoredMDSprites trainings are the longest chain: start it first
        threads: threads_of("make_mdsprites")
        resources:
            **resources_of("make_mdsprites"),
        shell:
            "slotcov make-mdsprites --n {params.n} --seed {params.seed} --workers {threads} --out {output} > {log} 2>&1"

elif CMD["tfrecord"] is None:

    localrules:
        download_cmdsprites,

    rule download_cmdsprites:
        output:
            TFRECORD,
        conda:
            ENV
        log:
            "logs/data/download_cmdsprites.log",
        benchmark:
            "logs/bench/data/download_cmdsprites.tsv"
        threads: threads_of("download")
        resources:
            **resources_of("download"),
        shell:
            "slotcov download --name cmdsprites --out {output} > {log} 2>&1"


rule convert_mdsprites:
    input:
        TFRECORD,
    output:
        directory("data/cmdsprites/{part}"),
    params:
        start=lambda wc: CMD_SPLITS[wc.part][0],
        n=lambda wc: CMD_SPLITS[wc.part][1],
        resolution=CMD["resolution"],
    wildcard_constraints:
        part="|".join(CMD_SPLITS),  # train, eval and probe (Table 2's probe scenes)
    conda:
        ENV
    log:
        "logs/data/convert_mdsprites_{part}.log",
    benchmark:
        "logs/bench/data/convert_mdsprites_{part}.tsv"
    priority: 50
    threads: threads_of("convert_mdsprites")
    resources:
        **resources_of("convert_mdsprites"),
    shell:
        "slotcov convert-mdsprites --tfrecord {input} --start {params.start} --count {params.n} "
        "--resolution {params.resolution} --out {output} > {log} 2>&1"


if COCO["source"] == "synthetic":

    rule make_coco:
        output:
            images=directory(f"{COCO_ROOT}/{{split}}"),
            annotations=f"{COCO_ROOT}/annotations/instances_{{split}}.json",
        params:
            root=lambda wc, output: Path(output.annotations).parents[1],
            n=lambda wc: COCO["synthetic"]["n_train" if wc.split == COCO_SPLIT["train"] else "n_eval"],
            # train and eval images differ: they come from different seeds
            seed=lambda wc: COCO["synthetic"]["seed"] + (wc.split == COCO_SPLIT["train"]),
        wildcard_constraints:
            split="|".join(COCO_SPLIT.values()),
        conda:
            ENV
        log:
            "logs/data/make_coco_{split}.log",
        benchmark:
            "logs/bench/data/make_coco_{split}.tsv"
        threads: threads_of("make_coco")
        resources:
            **resources_of("make_coco"),
        shell:
            "slotcov make-coco --n {params.n} --seed {params.seed} --split {wildcards.split} "
            "--out {params.root} > {log} 2>&1"

elif COCO["root"] is None:
    # The real COCO 2017 zips, unpacked into the layout pycocotools expects.

    localrules:
        download_coco,

    rule download_coco:
        output:
            f"{COCO_ROOT}/{{zipname}}.zip",
        params:
            name=lambda wc: COCO_ZIPS[wc.zipname],
        wildcard_constraints:
            zipname="|".join(COCO_ZIPS),
        conda:
            ENV
        log:
            "logs/data/download_{zipname}.log",
        benchmark:
            "logs/bench/data/download_{zipname}.tsv"
        threads: threads_of("download")
        resources:
            **resources_of("download"),
        shell:
            "slotcov download --name {params.name} --out {output} > {log} 2>&1"

    rule unzip_coco_images:
        input:
            f"{COCO_ROOT}/{{split}}.zip",
        output:
            directory(f"{COCO_ROOT}/{{split}}"),
        params:
            root=lambda wc, output: Path(output[0]).parent,
        wildcard_constraints:
            split="train2017|val2017",
        conda:
            ENV
        log:
            "logs/data/unzip_{split}.log",
        benchmark:
            "logs/bench/data/unzip_{split}.tsv"
        threads: threads_of("unzip")
        resources:
            **resources_of("unzip"),
        shell:
            "python -m zipfile -e {input} {params.root} > {log} 2>&1"

    rule unzip_coco_annotations:
        input:
            f"{COCO_ROOT}/annotations_trainval2017.zip",
        output:
            f"{COCO_ROOT}/annotations/instances_train2017.json",
            f"{COCO_ROOT}/annotations/instances_val2017.json",
        params:
            root=lambda wc, output: Path(output[0]).parents[1],
        conda:
            ENV
        log:
            "logs/data/unzip_annotations.log",
        benchmark:
            "logs/bench/data/unzip_annotations.tsv"
        threads: threads_of("unzip")
        resources:
            **resources_of("unzip"),
        shell:
            "python -m zipfile -e {input} {params.root} > {log} 2>&1"


rule prepare_coco:
    input:
        images=lambda wc: f"{COCO_ROOT}/{COCO_SPLIT[wc.part]}",
        annotations=lambda wc: f"{COCO_ROOT}/annotations/instances_{COCO_SPLIT[wc.part]}.json",
    output:
        directory("data/coco/{part}-{pipeline}"),
    params:
        root=lambda wc, input: Path(input.annotations).parents[1],
        split=lambda wc: COCO_SPLIT[wc.part],
        crop=lambda wc: COCO_PIPELINES[wc.pipeline]["crop"],
        skip_empty=lambda wc: "--skip-empty" if COCO_PIPELINES[wc.pipeline]["skip_empty"] else "",
        interpolation=lambda wc: COCO_PIPELINES[wc.pipeline]["interpolation"],
        mask_resize=lambda wc: COCO_PIPELINES[wc.pipeline]["mask_resize"],
        resize=lambda wc: COCO_PIPELINES[wc.pipeline]["resize"],
        limit=lambda wc: (f"--limit {COCO[f'limit_{wc.part}']}" if COCO[f"limit_{wc.part}"] else ""),
    wildcard_constraints:
        pipeline="|".join(COCO_PIPELINES),
    conda:
        ENV
    log:
        "logs/data/prepare_coco_{part}-{pipeline}.log",
    benchmark:
        "logs/bench/data/prepare_coco_{part}-{pipeline}.tsv"
    threads: threads_of("prepare_coco")
    resources:
        **resources_of("prepare_coco"),
    shell:
        "slotcov prepare-coco --root {params.root} --split {params.split} --pipeline {wildcards.pipeline} "
        "--crop {params.crop} {params.skip_empty} --interpolation {params.interpolation} "
        "--mask-resize {params.mask_resize} --resize {params.resize} {params.limit} --workers {threads} --out {output} > {log} 2>&1"
