"""The package's public names: ``__all__`` is sorted and agrees with what the package holds."""

import mirrorkv


def test_all_is_sorted_and_unique() -> None:
    assert list(mirrorkv.__all__) == sorted(set(mirrorkv.__all__))


def test_every_exported_name_exists() -> None:
    for name in mirrorkv.__all__:
        assert getattr(mirrorkv, name) is not None, name


def test_every_public_attribute_is_exported() -> None:
    public = {
        name
        for name, value in vars(mirrorkv).items()
        if not name.startswith("_") and not isinstance(value, type(mirrorkv))
    }
    public -= {"annotations", "Any"}
    assert public <= set(mirrorkv.__all__), public - set(mirrorkv.__all__)


def test_every_public_name_has_a_docstring() -> None:
    for name in mirrorkv.__all__:
        value = getattr(mirrorkv, name)
        if callable(value):
            assert value.__doc__, name


def test_every_public_method_of_every_store_has_a_docstring() -> None:
    import inspect

    from mirrorkv import FileStore, MemoryStore, SQLiteStore, Store

    for cls in (Store, MemoryStore, FileStore, SQLiteStore):
        for name, member in inspect.getmembers(cls):
            if name.startswith("_") or not (callable(member) or isinstance(member, property)):
                continue
            assert inspect.getdoc(member), f"{cls.__name__}.{name}"
