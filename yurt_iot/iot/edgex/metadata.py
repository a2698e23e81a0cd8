"""Async client of EdgeX core-metadata (REST API v3, port 59881): device services, device profiles, devices.

Writes are batches: the body is an array of ``{apiVersion, requestId, <payload>}`` and the answer a 207 with one
status per item, so one bad item does not fail the others; each add/update method returns one
:class:`ItemResult` per input, in order, and raises only when the batch as a whole was refused (400/500) or
EdgeX could not be reached. Reads raise :class:`~yurt_iot.iot.edgex.errors.NotFound` for a missing name, and
the ``list_*`` methods page with offset/limit until ``totalCount`` objects came back.

Registration order matters to EdgeX: service, then profile, then device; deletes go the other way round
(a service or profile still used by a device answers 409, :class:`~yurt_iot.iot.edgex.errors.Conflict`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import ValidationError

from yurt_iot.iot.edgex.dtos import (
    Device,
    DeviceProfile,
    DeviceService,
    DeviceServiceUpdate,
    DeviceUpdate,
    EdgeXModel,
)
from yurt_iot.iot.edgex.errors import EdgeXError, InvalidRequest, NotFound, error_for
from yurt_iot.iot.edgex.http import API_VERSION, EdgeXService

__all__ = ["MAX_PAGE_SIZE", "CoreMetadataClient", "ItemResult"]

MAX_PAGE_SIZE = 1024
"""core-metadata's default ``Service.MaxResultCount``: the largest `limit` it accepts."""

M = TypeVar("M", bound=EdgeXModel)


@dataclass(frozen=True, slots=True)
class ItemResult:
    """EdgeX's answer for one item of a batch write: its status and, for a create, the new object's id."""

    status_code: int
    id: str | None = None
    message: str | None = None
    request_id: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def error(self) -> EdgeXError | None:
        """The item's failure as the exception its status maps to, or None if it succeeded."""
        return None if self.ok else error_for(self.status_code, self.message or "")

    def raise_for_status(self) -> None:
        if (error := self.error) is not None:
            raise error


def _path_name(name: str) -> str:
    if not name:
        raise ValueError("name must not be empty")
    return quote(name, safe="")


class CoreMetadataClient(EdgeXService):
    """core-metadata at `base_url`, e.g. ``CoreMetadataClient("http://127.0.0.1:59881")``."""

    # -- device services ---------------------------------------------------------------------------

    async def add_device_services(self, services: Sequence[DeviceService]) -> list[ItemResult]:
        return await self._batch("POST", "/deviceservice", "service", services)

    async def update_device_services(self, updates: Sequence[DeviceServiceUpdate]) -> list[ItemResult]:
        return await self._batch("PATCH", "/deviceservice", "service", updates)

    async def get_device_service(self, name: str) -> DeviceService:
        return await self._get(f"/deviceservice/name/{_path_name(name)}", "service", DeviceService)

    async def list_device_services(
        self, *, labels: Iterable[str] = (), page_size: int = MAX_PAGE_SIZE
    ) -> list[DeviceService]:
        return await self._list("/deviceservice/all", "services", DeviceService, labels, page_size)

    async def delete_device_service(self, name: str) -> None:
        await self._request("DELETE", f"/deviceservice/name/{_path_name(name)}")

    # -- device profiles ---------------------------------------------------------------------------

    async def add_device_profiles(self, profiles: Sequence[DeviceProfile]) -> list[ItemResult]:
        return await self._batch("POST", "/deviceprofile", "profile", profiles)

    async def replace_device_profiles(self, profiles: Sequence[DeviceProfile]) -> list[ItemResult]:
        """PUT: replace each profile (by name) whole. Send the profile's `id`: EdgeX 4 drops it otherwise."""
        return await self._batch("PUT", "/deviceprofile", "profile", profiles)

    async def upload_device_profile(self, document: str | bytes, *, replace: bool = False) -> str | None:
        """Add (or with `replace`, replace) a profile from its YAML document, as EdgeX's own files are written.

        Returns the new profile's id when EdgeX reports one. Not a batch: a duplicate raises Conflict.
        """
        content = document.encode() if isinstance(document, str) else document
        files = {"file": ("profile.yaml", content, "application/x-yaml")}
        response = await self._request("PUT" if replace else "POST", "/deviceprofile/uploadfile", files=files)
        body = response.json()
        found = body.get("id") if isinstance(body, dict) else None
        return found if isinstance(found, str) else None

    async def get_device_profile(self, name: str) -> DeviceProfile:
        return await self._get(f"/deviceprofile/name/{_path_name(name)}", "profile", DeviceProfile)

    async def list_device_profiles(
        self, *, labels: Iterable[str] = (), page_size: int = MAX_PAGE_SIZE
    ) -> list[DeviceProfile]:
        return await self._list("/deviceprofile/all", "profiles", DeviceProfile, labels, page_size)

    async def delete_device_profile(self, name: str) -> None:
        await self._request("DELETE", f"/deviceprofile/name/{_path_name(name)}")

    # -- devices -----------------------------------------------------------------------------------

    async def add_devices(self, devices: Sequence[Device], *, bypass_validation: bool = False) -> list[ItemResult]:
        """Add devices. EdgeX 4 first asks each device's service to validate it over the message bus (and fails
        the item after its request timeout if nobody answers); `bypass_validation` skips that (EdgeX 4 only)."""
        return await self._batch("POST", "/device", "device", devices, _validation(bypass_validation))

    async def update_devices(
        self, updates: Sequence[DeviceUpdate], *, bypass_validation: bool = False
    ) -> list[ItemResult]:
        """PATCH devices (each identified by `id` or `name`); validation as for :meth:`add_devices`."""
        return await self._batch("PATCH", "/device", "device", updates, _validation(bypass_validation))

    async def get_device(self, name: str) -> Device:
        return await self._get(f"/device/name/{_path_name(name)}", "device", Device)

    async def device_exists(self, name: str) -> bool:
        try:
            await self._request("GET", f"/device/check/name/{_path_name(name)}")
        except NotFound:
            return False
        return True

    async def list_devices(self, *, labels: Iterable[str] = (), page_size: int = MAX_PAGE_SIZE) -> list[Device]:
        return await self._list("/device/all", "devices", Device, labels, page_size)

    async def delete_device(self, name: str) -> None:
        await self._request("DELETE", f"/device/name/{_path_name(name)}")

    # -- shared ------------------------------------------------------------------------------------

    async def _batch(
        self, method: str, path: str, key: str, items: Sequence[EdgeXModel], params: dict[str, str] | None = None
    ) -> list[ItemResult]:
        if not items:
            return []
        body = [{"apiVersion": API_VERSION, "requestId": str(uuid.uuid4()), key: item.to_json()} for item in items]
        answers = await self._json(method, path, json=body, params=params)
        if not isinstance(answers, list) or len(answers) != len(items):
            raise EdgeXError(None, f"{method} {path}: expected {len(items)} per-item answers, got {answers!r:.300}")
        return [_item_result(answer) for answer in answers]

    async def _get(self, path: str, key: str, model: type[M]) -> M:
        body = await self._json("GET", path)
        return _parse(model, body.get(key) if isinstance(body, dict) else None, path)

    async def _list(self, path: str, key: str, model: type[M], labels: Iterable[str], page_size: int) -> list[M]:
        """Every object, page by page. Objects added or deleted meanwhile may be missed or seen twice (EdgeX
        has no consistent snapshot); a level-triggered caller lists again on its next resync."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
        params: dict[str, str | int] = {"limit": page_size}
        if label_list := ",".join(labels):
            params["labels"] = label_list
        found: list[M] = []
        while True:
            try:
                body = await self._json("GET", path, params={**params, "offset": len(found)})
            except InvalidRequest as exc:
                if exc.status_code == 416 and found:  # the last objects were deleted since the previous page
                    return found
                raise
            page = body.get(key) if isinstance(body, dict) else None
            if not isinstance(page, list):
                raise EdgeXError(None, f"GET {path}: no {key!r} list in {body!r:.300}")
            found.extend(_parse(model, item, path) for item in page)
            if not page or len(found) >= int(body.get("totalCount", 0)):
                return found


def _validation(bypass: bool) -> dict[str, str] | None:
    return {"bypassValidation": "true"} if bypass else None


def _item_result(answer: Any) -> ItemResult:
    if not isinstance(answer, dict) or not isinstance(answer.get("statusCode"), int):
        raise EdgeXError(None, f"per-item answer without a statusCode: {answer!r:.300}")
    return ItemResult(answer["statusCode"], answer.get("id"), answer.get("message"), answer.get("requestId"))


def _parse(model: type[M], data: Any, where: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise EdgeXError(None, f"{where}: unexpected {model.__name__} from EdgeX: {exc}") from exc
