"""The public face of yurt_iot.kube: `__all__` lists exactly what the package exports, sorted."""

from __future__ import annotations

import types

import yurt_iot.kube as kube


def test_all_lists_every_public_name_once_and_sorted() -> None:
    names = vars(kube).items()
    public = {name for name, value in names if not name.startswith("_") and not isinstance(value, types.ModuleType)}
    assert set(kube.__all__) == public
    assert len(kube.__all__) == len(set(kube.__all__))
    assert list(kube.__all__) == sorted(kube.__all__, key=lambda n: (not n.isupper(), n))
