"""The layers AnchorAD puts in a viewer, found by their role, updated in place so that nothing piles up.

Every AnchorAD layer carries ``metadata["anchorad"]["role"]``: ``t1`` and ``fmri`` for a
subject's images (:data:`SUBJECT_ROLES`), ``overlay-smri`` and ``overlay-fmri`` for the
explanation maps (:data:`OVERLAY_ROLES`). An overlay's name says what it shows and ends in
:data:`STALE_MARK` while the diagnosis it explains is stale.
"""
from __future__ import annotations

import weakref
from contextlib import contextmanager
from typing import Any, Callable, Iterator

__all__ = ["ViewerLayers", "anchorad_meta", "SUBJECT_ROLES", "OVERLAY_ROLES", "STALE_MARK"]

#: Roles of a subject's own image layers, and of the explanation overlays.
SUBJECT_ROLES = ("t1", "fmri")
OVERLAY_ROLES = ("overlay-smri", "overlay-fmri")

#: Appended to the name of an overlay whose diagnosis is stale.
STALE_MARK = " [STALE]"


def anchorad_meta(layer: Any) -> dict[str, Any]:
    """``layer.metadata["anchorad"]`` (empty for other layers)."""
    meta = getattr(layer, "metadata", None)
    value = meta.get("anchorad") if isinstance(meta, dict) else None
    return value if isinstance(value, dict) else {}


def is_pending(layer: Any) -> bool:
    """A subject layer napari added itself (reader, sample data) that no session adopted yet."""
    meta = anchorad_meta(layer)
    return meta.get("role") in SUBJECT_ROLES and bool(meta.get("folder")) and not meta.get("adopted")


class ViewerLayers:
    """The AnchorAD layers of one viewer.

    Parameters
    ----------
    viewer : napari.Viewer
        Held weakly.
    is_stale : callable
        Whether the shown diagnosis is stale (overlays are then named with :data:`STALE_MARK`).
    """

    def __init__(self, viewer: Any, is_stale: Callable[[], bool]) -> None:
        self._viewer = weakref.ref(viewer)
        self._is_stale = is_stale
        self._applying = 0  # > 0 while AnchorAD itself adds or removes layers

    @property
    def viewer(self) -> Any:
        """The napari viewer (``None`` once it is gone)."""
        return self._viewer()

    @property
    def applying(self) -> bool:
        """Whether the layers are being changed by AnchorAD itself (not a subject to adopt)."""
        return self._applying > 0

    @contextmanager
    def own_changes(self) -> Iterator[None]:
        """Context in which layer insertions are AnchorAD's own."""
        self._applying += 1
        try:
            yield
        finally:
            self._applying -= 1

    def anchorad_layers(self, roles: "tuple[str, ...] | None" = None) -> list[Any]:
        """The viewer's AnchorAD layers (of the given roles; default all)."""
        viewer = self.viewer
        if viewer is None:
            return []
        return [layer for layer in viewer.layers
                if anchorad_meta(layer).get("role") and (roles is None or anchorad_meta(layer)["role"] in roles)]

    def overlay(self, role: str) -> Any:
        """The overlay layer of ``role`` (``"overlay-smri"`` / ``"overlay-fmri"``), or ``None``."""
        found = self.anchorad_layers((role,))
        return found[0] if found else None

    def set_overlay(self, role: str, caption: str, data: Any, kwargs: dict[str, Any]) -> Any:
        """Add the overlay of ``role`` or update it in place; its name is ``caption`` (+ the stale mark)."""
        viewer = self.viewer
        if viewer is None:
            return None
        kwargs = dict(kwargs)
        kwargs.pop("name", None)
        meta = dict(kwargs.pop("metadata", {}).get("anchorad", {}))
        meta.update(role=role, caption=caption)
        layer = self.overlay(role)
        with self.own_changes():
            if layer is not None and getattr(layer.data, "ndim", None) == getattr(data, "ndim", None):
                for key in ("scale", "translate", "affine", "axis_labels", "units"):
                    kwargs.pop(key, None)  # same grid within a subject; keep the layer's transform
                layer.data = data
                for key, value in kwargs.items():
                    setattr(layer, key, value)
                layer.metadata["anchorad"] = meta
            else:
                if layer is not None:
                    viewer.layers.remove(layer)
                layer = viewer.add_image(data, name=self.unique(caption), metadata={"anchorad": meta}, **kwargs)
        self.name_overlay(layer)
        return layer

    def show_overlays(self, overlays: "dict[str, tuple[Any, dict[str, Any], str] | None]") -> None:
        """Update the overlays of these roles in place (``(data, kwargs, caption)``) or hide them (``None``).

        The maps stay on top of the anatomy, and the first one shown is selected (its controls at hand).
        """
        viewer = self.viewer
        if viewer is None:
            return
        for role, value in overlays.items():
            if value is not None:
                self.set_overlay(role, value[2], value[0], value[1])
            else:
                layer = self.overlay(role)
                if layer is not None:
                    layer.visible = False
        for role in reversed(list(overlays)):
            layer = self.overlay(role)
            if layer is not None:
                index = viewer.layers.index(layer)
                if index != len(viewer.layers) - 1:
                    viewer.layers.move(index, len(viewer.layers))
        shown = [self.overlay(role) for role, value in overlays.items()
                 if value is not None and value[1].get("visible", True)]
        if shown:
            viewer.layers.selection.active = shown[0]

    def show_caption(self, roles: "tuple[str, ...]" = OVERLAY_ROLES) -> None:
        """The canvas caption: the name of each visible overlay (what it shows, whether it is stale)."""
        overlay = getattr(self.viewer, "text_overlay", None)
        if overlay is None:
            return
        lines = [layer.name for layer in (self.overlay(role) for role in roles) if layer is not None and layer.visible]
        try:
            overlay.text = "\n".join(lines)
            overlay.visible = bool(lines)
        except Exception:  # the caption is cosmetic
            pass

    def caption(self) -> str:
        """The canvas caption's text (empty when none is shown)."""
        overlay = getattr(self.viewer, "text_overlay", None)
        return str(overlay.text) if overlay is not None and overlay.visible else ""

    def remove_layers(self, role_prefix: str = "") -> None:
        """Remove AnchorAD layers whose role starts with ``role_prefix`` (default: all of them)."""
        viewer = self.viewer
        if viewer is None:
            return
        with self.own_changes():
            for layer in self.anchorad_layers():
                if str(anchorad_meta(layer).get("role", "")).startswith(role_prefix):
                    viewer.layers.remove(layer)

    def replace_subject(self, layers: list) -> None:
        """Every AnchorAD layer is replaced by a subject's ``(data, kwargs, kind)`` layers."""
        viewer = self.viewer
        if viewer is None:
            return
        with self.own_changes():
            for layer in self.anchorad_layers():
                viewer.layers.remove(layer)
            for data, kwargs, kind in layers:
                kwargs = dict(kwargs)
                meta = kwargs.setdefault("metadata", {}).setdefault("anchorad", {})
                meta["adopted"] = True
                getattr(viewer, f"add_{kind}")(data, **kwargs)

    def adopt(self, batch: list[Any]) -> None:
        """Keep ``batch`` (layers napari added for one subject) and remove every other AnchorAD layer."""
        viewer = self.viewer
        if viewer is None:
            return
        with self.own_changes():
            for layer in self.anchorad_layers():
                if any(layer is b for b in batch):
                    anchorad_meta(layer)["adopted"] = True
                else:  # the previous subject's images and maps, older copies, other pending folders
                    viewer.layers.remove(layer)
            for layer in batch:  # napari suffixes a re-opened name ("sub-001 T1 [1]"): the plain name
                base = layer.name.split(" [")[0]
                if layer.name != base and base not in viewer.layers:
                    layer.name = base

    def drop(self, layers: list[Any]) -> None:
        """Remove ``layers`` (a subject that could not be opened)."""
        viewer = self.viewer
        if viewer is None:
            return
        with self.own_changes():
            for layer in layers:
                viewer.layers.remove(layer)

    def pending(self) -> list[Any]:
        """Subject layers napari added that are not adopted yet (:func:`is_pending`)."""
        viewer = self.viewer
        return [layer for layer in viewer.layers if is_pending(layer)] if viewer is not None else []

    def rename_overlays(self) -> None:
        """Name every overlay after its caption and the stale state."""
        for layer in self.anchorad_layers(OVERLAY_ROLES):
            self.name_overlay(layer)

    def name_overlay(self, layer: Any) -> None:
        """Name ``layer`` after its caption, with :data:`STALE_MARK` while the diagnosis is stale."""
        meta = anchorad_meta(layer)
        caption = str(meta.get("caption") or layer.name).removesuffix(STALE_MARK)
        stale = self._is_stale() and meta.get("role") in OVERLAY_ROLES
        meta["stale"] = stale
        wanted = caption + (STALE_MARK if stale else "")
        if layer.name != wanted:
            others = [other for other in self.viewer.layers if other is not layer]
            layer.name = wanted if wanted not in [o.name for o in others] else self.unique(wanted)

    def unique(self, name: str) -> str:
        """``name``, or ``name (2)``, ``name (3)``... if the viewer has a layer of that name."""
        viewer = self.viewer
        if viewer is None or name not in viewer.layers:
            return name
        i = 2
        while f"{name} ({i})" in viewer.layers:
            i += 1
        return f"{name} ({i})"

    def reset_view(self) -> None:
        """2D, anterior up and the patient's right on the right, whole volume in view, first frame."""
        v = self.viewer
        if v is None:
            return
        v.dims.ndisplay = 2
        scene = getattr(v, "scene", None)  # napari >= 0.9; older: viewer.camera
        camera = scene.camera if scene is not None and hasattr(scene, "camera") else v.camera
        camera.orientation2d = ("up", "right")  # anterior up, patient's right on the right
        v.reset_view()
        if v.dims.ndim >= 4:
            v.dims.set_current_step(0, 0)
