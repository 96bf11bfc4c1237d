"""The two filter rules of docs/PROTOCOL.md §5.4, exhaustively."""

from server.engine.filters import TypeFilter


def test_everything_admits_every_type() -> None:
    assert TypeFilter.everything().admits("anything")


def test_subscribe_from_all_but_becomes_only() -> None:
    f = TypeFilter.everything().unsubscribe(["spam"]).subscribe(["a", "b"])
    assert f == TypeFilter(only=frozenset({"a", "b"}))
    assert f.admits("a") and not f.admits("c") and not f.admits("spam")


def test_subscribe_from_only_is_union() -> None:
    f = TypeFilter(only=frozenset({"a"})).subscribe(["b"])
    assert f.only == frozenset({"a", "b"})
    assert f.excluded == frozenset()


def test_unsubscribe_from_only_is_difference_and_may_admit_nothing() -> None:
    f = TypeFilter(only=frozenset({"a", "b"})).unsubscribe(["a", "b"])
    assert f.only == frozenset()
    assert not f.admits("a") and not f.admits("z")
    assert f.subscribe(["z"]).admits("z")


def test_unsubscribe_from_all_but_grows_exclusions() -> None:
    f = TypeFilter.everything().unsubscribe(["x"]).unsubscribe(["y"])
    assert f.only is None
    assert f.excluded == {"x", "y"}
    assert not f.admits("x") and not f.admits("y") and f.admits("z")
