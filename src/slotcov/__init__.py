"""slotcov: Slot Attention with covariance / cosine bottleneck regularisers, reproduced."""

__version__ = "0.1.0"


def reexport(package: str, module: str):
    """A module `__getattr__` for `package` that serves the public names of its submodule `module`,
    imported on first use (so importing the package stays light)."""
    def __getattr__(name: str):
        import importlib
        import importlib.util

        if importlib.util.find_spec(f"{package}.{name}") is not None:  # a submodule: `from package import step`
            return importlib.import_module(f"{package}.{name}")  # without importing `module` on the way
        try:
            return getattr(importlib.import_module(f"{package}.{module}"), name)
        except AttributeError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return __getattr__
