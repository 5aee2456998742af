"""weir.common: Row, RowKind, Types, Configuration."""

from __future__ import annotations

import copy
import pickle

import cloudpickle
import pytest

from weir.common import Configuration, Row, RowKind, TypeInformation, Types

# ---- Row ----


def test_positional_row():
    r = Row(1, "a", None)
    assert len(r) == 3
    assert (r[0], r[1], r[2]) == (1, "a", None)
    assert r[-1] is None
    assert list(r) == [1, "a", None]
    assert r[0:2] == [1, "a"]
    assert 1 in r and "a" in r and 2 not in r
    assert repr(r) == "Row(1, 'a', None)"
    with pytest.raises(TypeError):
        r.as_dict()
    with pytest.raises(KeyError):
        r["a"]
    with pytest.raises(AttributeError):
        r.a  # noqa: B018


def test_named_row_access_by_attribute_index_and_name():
    r = Row(name="Alice", age=11)
    assert r.name == "Alice" and r.age == 11
    assert r["name"] == "Alice" and r["age"] == 11
    assert r[0] == "Alice" and r[1] == 11
    assert list(r) == ["Alice", 11]
    assert r.as_dict() == {"name": "Alice", "age": 11}
    assert list(r.as_dict()) == ["name", "age"], "keyword order is the field order"
    assert "name" in r and "Alice" not in r  # named rows test field names, as PyFlink's
    assert r.get_fields_by_names(["age", "name"]) == [11, "Alice"]
    assert repr(r) == "Row(name='Alice', age=11)"
    with pytest.raises(AttributeError):
        r.height  # noqa: B018
    with pytest.raises(KeyError):
        r["height"]


def test_row_mutation_by_attribute_name_and_index():
    r = Row(a=1, b=2)
    r.a = 10
    r["b"] = 20
    assert list(r) == [10, 20]
    r[0] = 100
    assert r.a == 100


def test_row_factory():
    Person = Row("name", "age")
    p = Person("Alice", 11)
    assert p.name == "Alice" and p["age"] == 11 and p[1] == 11
    assert p.as_dict() == {"name": "Alice", "age": 11}
    q = Person("Bob", 12)
    assert q.as_dict() == {"name": "Bob", "age": 12}
    assert p.as_dict() == {"name": "Alice", "age": 11}, "rows of one factory are independent"
    with pytest.raises(ValueError):
        Person("only-one")


def test_row_rejects_positional_and_keyword_together():
    with pytest.raises(ValueError):
        Row(1, b=2)


def test_row_as_dict_recursive():
    r = Row(id=1, inner=Row(x=1, y=2))
    assert r.as_dict() == {"id": 1, "inner": Row(x=1, y=2)}
    assert r.as_dict(recursive=True) == {"id": 1, "inner": {"x": 1, "y": 2}}


def test_set_field_names():
    r = Row(1, 2)
    r.set_field_names(["a", "b"])
    assert r.b == 2 and r.as_dict() == {"a": 1, "b": 2}


def test_row_equality_and_hash():
    assert Row(1, "a") == Row(1, "a")
    assert hash(Row(1, "a")) == hash(Row(1, "a"))
    assert Row(1, "a") != Row("a", 1)
    assert Row(1, "a") != (1, "a")
    assert Row(a=1) == Row(a=1) and hash(Row(a=1)) == hash(Row(a=1))
    d = {Row(1, "a"): "x"}
    assert d[Row(1, "a")] == "x"
    deleted = Row(1, "a")
    deleted.set_row_kind(RowKind.DELETE)
    assert deleted != Row(1, "a")
    assert deleted.get_row_kind() is RowKind.DELETE
    assert Row(1, 2) < Row(1, 3)
    assert sorted([Row(2), Row(1), Row(3)]) == [Row(1), Row(2), Row(3)]


def test_row_kind_short_strings():
    assert [k.short_string() for k in RowKind] == ["+I", "-U", "+U", "-D"]
    assert Row(1).get_row_kind() is RowKind.INSERT


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps, lambda r: pickle.dumps(r, protocol=5)])
def test_row_pickle_round_trip_keeps_names_and_kind(dumps):
    r = Row(id=7, name="x", tags=["a", "b"])
    r.set_row_kind(RowKind.UPDATE_AFTER)
    back = pickle.loads(dumps(r))
    assert back == r
    assert back.get_row_kind() is RowKind.UPDATE_AFTER
    assert back.as_dict() == {"id": 7, "name": "x", "tags": ["a", "b"]}
    assert back.name == "x"
    p = pickle.loads(dumps(Row(1, 2)))
    assert p == Row(1, 2) and p.get_row_kind() is RowKind.INSERT
    with pytest.raises(TypeError):
        p.as_dict()


def test_row_copy_and_deepcopy():
    r = Row(a=[1], b=2)
    c = copy.deepcopy(r)
    assert c == r and c.as_dict() == r.as_dict()
    c.a.append(2)
    assert r.a == [1]
    s = copy.copy(r)
    assert s.as_dict() == {"a": [1], "b": 2}
    assert s.a is r.a, "a shallow copy shares the field values"


def test_row_shallow_copy_is_independent():
    r = Row(a=1, b=2)
    s = copy.copy(r)
    s.b = 3
    assert r.b == 2


# ---- Types ----


def test_types_factories():
    assert Types.INT() == Types.INT()
    assert Types.INT() != Types.LONG()
    assert repr(Types.STRING()) == "STRING"
    t = Types.TUPLE([Types.STRING(), Types.INT()])
    assert t.name == "TUPLE" and t.components == (Types.STRING(), Types.INT())
    assert repr(t) == "TUPLE(STRING, INT)"
    row = Types.ROW_NAMED(["id", "v"], [Types.LONG(), Types.DOUBLE()])
    assert row.name == "ROW" and row.field_names == ("id", "v") and row.components == (Types.LONG(), Types.DOUBLE())
    assert Types.ROW([Types.INT()]).field_names is None
    assert Types.MAP(Types.STRING(), Types.LIST(Types.INT())).components == (
        Types.STRING(),
        TypeInformation("LIST", (Types.INT(),)),
    )
    assert Types.BASIC_ARRAY(Types.INT()).components == (Types.INT(),)
    assert Types.PICKLED_BYTE_ARRAY().name == "PICKLED_BYTE_ARRAY"
    assert hash(Types.INT()) == hash(Types.INT())
    with pytest.raises(ValueError):
        Types.ROW_NAMED(["a", "b"], [Types.INT()])


# ---- Configuration ----


def test_configuration_typed_getters_convert_on_read():
    c = Configuration()
    c.set_string("parallelism.default", "4")
    c.set_integer("taskmanager.numberOfTaskSlots", 2)
    c.set_float("ratio", 0.5)
    c.set_boolean("flag", True)
    assert c.get_integer("parallelism.default") == 4
    assert c.get_string("taskmanager.numberOfTaskSlots") == "2"
    assert c.get_float("ratio") == 0.5
    assert c.get_string("ratio") == "0.5"
    assert c.get_boolean("flag") is True
    assert c.get_string("flag") == "True"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        (" yes ", True),
        ("1", True),
        ("on", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("off", False),
    ],
)
def test_configuration_boolean_from_string(raw, expected):
    assert Configuration().set_string("k", raw).get_boolean("k") is expected


def test_configuration_defaults_and_key_management():
    c = Configuration()
    assert c.get_string("missing") is None
    assert c.get_string("missing", "d") == "d"
    assert c.get_integer("missing", 7) == 7
    assert c.get_float("missing", 1.5) == 1.5
    assert c.get_boolean("missing", True) is True
    c.set_integer("a", 1)
    assert c.contains_key("a") and not c.contains_key("b")
    assert c.key_set() == {"a"}
    assert c.remove_config("a") is True
    assert c.remove_config("a") is False
    assert not c.contains_key("a")
    with pytest.raises(ValueError):
        Configuration().set_string("n", "abc").get_integer("n")


def test_configuration_copy_add_all_to_dict_eq():
    base = Configuration().set_integer("a", 1)
    other = Configuration(base)
    other.set_string("b", "x")
    assert not base.contains_key("b"), "the copy constructor copies"
    merged = Configuration().add_all(other, prefix="p.")
    assert merged.to_dict() == {"p.a": "1", "p.b": "x"}
    assert Configuration().set_integer("a", 1) == Configuration().set_string("a", "1")
    assert Configuration().set_integer("a", 1) != Configuration().set_integer("a", 2)
