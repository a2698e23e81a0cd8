"""The informer's local cache: the last known state of every watched object, with secondary indexes.

Reconcilers read from here instead of the API server, so a reconcile costs no request and the load on
the server does not grow with the number of reconciles. Indexes answer "which devices are in pool X"
without scanning every object.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping

from yurt_iot.kube.objects import Obj, ObjectKey, field_value, object_key

__all__ = ["IndexFunc", "Store", "by_field", "by_namespace"]

IndexFunc = Callable[[Obj], Iterable[str]]
"""The values an object is indexed under (none, one or several)."""


def by_namespace(obj: Obj) -> list[str]:
    """Index function: the object's namespace."""
    return [str((obj.get("metadata") or {}).get("namespace") or "")]


def by_field(path: str) -> IndexFunc:
    """Index function for a dotted field path, e.g. `by_field("spec.nodePool")`; objects without it are left out."""

    def values(obj: Obj) -> list[str]:
        value = field_value(obj, path)
        if value is None:
            return []
        if isinstance(value, list):
            return [str(v) for v in value]
        return [str(value)]

    return values


class Store:
    """Objects by key plus named indexes kept up to date on every change.

    Objects handed out are the cached ones: treat them as read-only (copy before changing).
    """

    def __init__(self, indexers: Mapping[str, IndexFunc] | None = None) -> None:
        self._objects: dict[ObjectKey, Obj] = {}
        self._indexers: dict[str, IndexFunc] = dict(indexers or {})
        self._indexes: dict[str, dict[str, set[ObjectKey]]] = {name: {} for name in self._indexers}

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, key: object) -> bool:
        return key in self._objects

    def get(self, namespace: str, name: str) -> Obj | None:
        """The cached object, or None; `namespace` is "" for cluster-scoped objects."""
        return self._objects.get(ObjectKey(namespace, name))

    def get_by_key(self, key: ObjectKey) -> Obj | None:
        return self._objects.get(key)

    def list(self) -> builtins.list[Obj]:
        return list(self._objects.values())

    def keys(self) -> builtins.list[ObjectKey]:
        return list(self._objects)

    def by_index(self, index: str, value: str) -> builtins.list[Obj]:
        """Objects whose index function returned `value`; an unknown index name is an error."""
        if index not in self._indexes:
            raise KeyError(f"no index {index!r} (known: {', '.join(sorted(self._indexes)) or 'none'})")
        return [self._objects[key] for key in self._indexes[index].get(value, ())]

    def index_values(self, index: str) -> builtins.list[str]:
        """Every value of an index that at least one object has."""
        return list(self._indexes[index])

    def add_indexer(self, name: str, func: IndexFunc) -> None:
        """A new index, built at once over the cached objects."""
        if name in self._indexers:
            raise ValueError(f"index {name!r} exists already")
        self._indexers[name] = func
        self._indexes[name] = {}
        for key, obj in self._objects.items():
            self._index(name, key, obj)

    def upsert(self, obj: Obj) -> Obj | None:
        """Store an object; returns the version it replaces, if any."""
        key = object_key(obj)
        old = self._objects.get(key)
        if old is not None:
            self._unindex(key, old)
        self._objects[key] = obj
        for name in self._indexers:
            self._index(name, key, obj)
        return old

    def remove(self, key: ObjectKey) -> Obj | None:
        """Forget an object; returns it, or None if it was not cached."""
        old = self._objects.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _index(self, name: str, key: ObjectKey, obj: Obj) -> None:
        for value in self._indexers[name](obj):
            self._indexes[name].setdefault(value, set()).add(key)

    def _unindex(self, key: ObjectKey, obj: Obj) -> None:
        for name, func in self._indexers.items():
            index = self._indexes[name]
            for value in func(obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]
