"""The recording API: a few calls around a generation loop.

    with provenance.Session(title="harbour at dusk") as session:
        session.load_model("sd-1.5", path="model.safetensors")
        session.set_prompt("a harbour at dusk, oil painting", negative="blurry")
        session.set_parameters(seed=1234, steps=30, guidance=7.5, sampler="DDIM")
        generation = session.record_generation(images, seeds=[1234, 1235, 1236, 1237])
        session.select(generation.candidates[2], reason="best light on the water")
        session.export(images[2], "harbour.png")

Each call appends one signed entry to the journal before it returns (durable:
a crash later loses nothing already recorded) and says who acted: a person
(`Actor.HUMAN`) or the tool.  Defaults follow who usually does what: prompts,
parameters, selections and edits are a person's decisions; generations are
the tool's.  Entry kinds and bodies are specified in ``docs/format.md``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import attrs
from PIL import Image

from . import __version__
from .errors import UsageError
from .images import ImageDigest, ImageSource, digest_image, digest_loaded, load_image, make_thumbnail
from .journal import Actor, SignedEntry, disclosure_blob
from .keys import DEFAULT_KEY_NAME, KeyStore, SigningKey
from .store import NewEntry, Store

__all__ = ["Adapter", "Candidate", "Generation", "Session", "file_sha256", "short_hash"]

_HASH_CHUNK = 4 * 2**20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a (possibly multi-GB) weights file, read in chunks."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    return digest.hexdigest()


def short_hash(sha256_hex: str) -> str:
    """AUTOMATIC1111's short model hash ("AutoV2"): the first 10 hex digits of SHA-256."""
    return sha256_hex[:10]


@attrs.frozen
class Adapter:
    """A LoRA or other adapter applied to the model, with its weight."""

    name: str
    weight: float = 1.0
    sha256: str | None = None
    kind: str = "lora"

    def to_body(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "weight": float(self.weight),
            "sha256": self.sha256,
            "short_hash": None if self.sha256 is None else short_hash(self.sha256),
        }


@attrs.frozen
class Candidate:
    """One output of a generation, as recorded."""

    generation: int
    index: int
    digest: ImageDigest
    seed: int | None = None

    @property
    def id(self) -> str:
        return self.digest.pixel_sha256


@attrs.frozen
class Generation:
    number: int
    candidates: tuple[Candidate, ...]
    entry: SignedEntry


CandidateRef = Candidate | str | int

# Entry kinds whose outputs are numbered candidates (see `_replay_state`).
_OUTPUT_KINDS = ("generation", "edit.region", "edit.manual", "import.image")


def _actor(actor: Actor | str) -> Actor:
    try:
        return Actor(actor)
    except ValueError:
        raise UsageError(f"unknown actor {actor!r}: one of {', '.join(a.value for a in Actor)}") from None


class Session:
    """A recording session over one journal in the local store.

    Opens (or creates) the journal, signs with the named key from the key
    store, and appends one entry per call.  Leaving the ``with`` block without
    an error seals the journal when `seal_on_exit` is set.
    """

    def __init__(
        self,
        *,
        title: str | None = None,
        journal: str | None = None,
        store: Store | None = None,
        key: SigningKey | None = None,
        key_name: str = DEFAULT_KEY_NAME,
        passphrase: bytes | None = None,
        seal_on_exit: bool = False,
        thumbnails: bool = False,
        perceptual_hashes: bool = True,
        private_prompts: bool = False,
        tool: str = "provenance",
        tool_version: str = __version__,
    ) -> None:
        self._owns_store = store is None
        self.store = store if store is not None else Store()
        if key is None:
            keys = KeyStore()
            key = keys.load(key_name, passphrase=passphrase) if keys.exists(key_name) else keys.generate(key_name)
        self.key = key
        self.seal_on_exit = seal_on_exit
        self.thumbnails = thumbnails
        self.perceptual_hashes = perceptual_hashes
        self.private_prompts = private_prompts
        self._commitments: dict[str, str] = {}
        self._prompt: tuple[str | None, str | None] = (None, None)
        self._private_prompt = False
        self._prompt_revision = 0
        self._parameters: dict[str, Any] = {}
        self._generations: dict[int, tuple[Candidate, ...]] = {}
        self._last_generation: int | None = None
        if journal is None:
            self.journal = self.store.create_journal(key, title=title)
            self._append("session.start", {"tool": {"name": tool, "version": tool_version}}, Actor.HUMAN)
        else:
            self.journal = self.store.resolve(journal)
            self._replay_state()

    # -- context manager ---------------------------------------------------------

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None and self.seal_on_exit and not self.store.info(self.journal).sealed:
                self.seal()
        finally:
            self.close()

    def close(self) -> None:
        if self._owns_store:
            self.store.close()

    # -- plumbing ----------------------------------------------------------------

    def _append(self, kind: str, body: Mapping[str, Any], actor: Actor | str) -> SignedEntry:
        return self.store.append(self.journal, kind, body, key=self.key, actor=_actor(actor))

    def _replay_state(self) -> None:
        """Pick up prompt, parameters and candidates when continuing a journal."""
        for signed in self.store.entries(self.journal):
            body, kind = signed.entry.body, signed.entry.kind
            if kind == "prompt.set":
                self._prompt = (body.get("prompt"), body.get("negative_prompt"))
                self._prompt_revision = int(body.get("revision", self._prompt_revision + 1))
            elif kind == "params.set":
                values = body.get("values")
                if isinstance(values, dict):
                    self._parameters = dict(values)
            elif kind in _OUTPUT_KINDS:
                number = int(body.get("generation", 0))
                outputs = body.get("candidates") or [body.get("result")]
                self._generations[number] = tuple(
                    Candidate(number, i, ImageDigest(**_digest_fields(c)), c.get("seed"))
                    for i, c in enumerate(outputs)
                    if isinstance(c, dict)
                )
                self._last_generation = number

    def _digest(self, image: ImageSource) -> tuple[ImageDigest, Image.Image]:
        decoded, data = load_image(image)
        return digest_loaded(decoded, data, perceptual=self.perceptual_hashes), decoded

    def _thumbnail(self, image: Image.Image, body: dict[str, Any]) -> None:
        if self.thumbnails:
            body["thumbnail_sha256"] = self.store.put_blob(self.journal, make_thumbnail(image), "image/webp")

    def _resolve(self, ref: CandidateRef, generation: int | None = None) -> Candidate:
        if isinstance(ref, Candidate):
            return ref
        pool = (
            self._generations.get(generation if generation is not None else self._last_generation or 0, ())
            if isinstance(ref, int)
            else tuple(c for cs in self._generations.values() for c in cs)
        )
        for candidate in pool:
            if (isinstance(ref, int) and candidate.index == ref) or (isinstance(ref, str) and candidate.id == ref):
                return candidate
        raise UsageError(f"no recorded candidate {ref!r}")

    # -- the steps ------------------------------------------------------------------

    def load_model(
        self,
        name: str,
        *,
        path: str | os.PathLike[str] | None = None,
        sha256: str | None = None,
        adapters: Sequence[Adapter] = (),
        actor: Actor | str = Actor.HUMAN,
        **details: Any,
    ) -> SignedEntry:
        """The model (and adapters) in use; hashes the weights file when given a path."""
        if sha256 is None and path is not None:
            sha256 = file_sha256(path)
        body: dict[str, Any] = {
            "name": name,
            "sha256": sha256,
            "short_hash": None if sha256 is None else short_hash(sha256),
            "file": None if path is None else Path(path).name,
            "adapters": [a.to_body() for a in adapters],
        }
        body.update(details)
        return self._append("model.load", body, actor)

    def commit_text(self, text: str) -> str:
        """Record `text` privately: the SHA-256 commitment entries name instead of the text.

        The salted text is kept in the local store as a disclosure blob and
        leaves it only with ``export(..., disclose=True)``; the same text gets
        the same commitment within a session.
        """
        commitment = self._commitments.get(text)
        if commitment is None:
            blob = disclosure_blob(text, secrets.token_bytes(16))
            commitment = self.store.put_blob(self.journal, blob.data, blob.media_type)
            self._commitments[text] = commitment
        return commitment

    def _public(self, name: str, text: str | None, private: bool) -> dict[str, Any]:
        """`{name: text}`, or for a private text `{name: None, name_commitment: hash}`."""
        if text is None or not private:
            return {name: text}
        return {name: None, f"{name}_commitment": self.commit_text(text)}

    def _public_prompt(self, prompt: str | None, negative: str | None, private: bool) -> dict[str, Any]:
        return {**self._public("prompt", prompt, private), **self._public("negative_prompt", negative, private)}

    def set_prompt(
        self,
        prompt: str,
        negative: str | None = None,
        *,
        private: bool | None = None,
        actor: Actor | str = Actor.HUMAN,
    ) -> SignedEntry:
        """A new revision of the prompt (and negative prompt); the full text is kept.

        With `private` (default: the session's `private_prompts`), the entry holds
        salted SHA-256 commitments instead, and later entries that would repeat
        the prompt (generation inputs, region edits) do likewise.
        """
        private = self.private_prompts if private is None else private
        previous = self._prompt
        signed = self._append(
            "prompt.set",
            {
                "revision": self._prompt_revision + 1,
                **self._public_prompt(prompt, negative, private),
                "changed": [
                    name
                    for name, old, new in (("prompt", previous[0], prompt), ("negative_prompt", previous[1], negative))
                    if old != new
                ],
            },
            actor,
        )
        # Only once recorded: a refused entry must not change what the next one compares with.
        self._prompt_revision += 1
        self._prompt = (prompt, negative)
        self._private_prompt = private
        return signed

    def set_parameters(self, *, actor: Actor | str = Actor.HUMAN, **parameters: Any) -> SignedEntry | None:
        """Parameters set or changed; recorded as the change from the previous values."""
        changes = {
            name: {"from": self._parameters.get(name), "to": value}
            for name, value in sorted(parameters.items())
            if name not in self._parameters or self._parameters[name] != value
        }
        if not changes:
            return None
        values = {**self._parameters, **parameters}
        signed = self._append("params.set", {"changes": changes, "values": values}, actor)
        # Only once recorded: otherwise a refused value would count as "unchanged" next time.
        self._parameters = values
        return signed

    def record_generation(
        self,
        images: Sequence[ImageSource],
        *,
        seeds: Sequence[int | None] | None = None,
        inputs: Mapping[str, Any] | None = None,
        mode: str = "txt2img",
        source: ImageSource | None = None,
        actor: Actor | str = Actor.TOOL,
    ) -> Generation:
        """A generation: its fully resolved inputs and every candidate it produced."""
        if not images:
            raise UsageError("a generation needs at least one output image")
        if seeds is not None and len(seeds) != len(images):
            raise UsageError("give one seed per image")
        number = max(self._generations, default=0) + 1
        candidates: list[Candidate] = []
        bodies: list[dict[str, Any]] = []
        for index, image in enumerate(images):
            digest, decoded = self._digest(image)
            seed = None if seeds is None else seeds[index]
            candidate = Candidate(number, index, digest, seed)
            body = {"index": index, "seed": seed, **digest.to_body()}
            self._thumbnail(decoded, body)
            candidates.append(candidate)
            bodies.append(body)
        resolved = {
            **self._public_prompt(self._prompt[0], self._prompt[1], self._private_prompt),
            "prompt_revision": self._prompt_revision or None,
            **self._parameters,
            **(inputs or {}),
        }
        body = {"generation": number, "mode": mode, "inputs": resolved, "candidates": bodies}
        if source is not None:
            body["source"] = self._digest(source)[0].to_body()
        entry = self._append("generation", body, actor)
        self._generations[number] = tuple(candidates)
        self._last_generation = number
        return Generation(number, tuple(candidates), entry)

    def select(
        self,
        chosen: CandidateRef | Sequence[CandidateRef],
        *,
        rejected: Sequence[CandidateRef] | None = None,
        generation: int | None = None,
        reason: str | None = None,
        actor: Actor | str = Actor.HUMAN,
    ) -> SignedEntry:
        """The candidate(s) kept; by default every other candidate of that generation is rejected."""
        refs = list(chosen) if isinstance(chosen, Sequence) and not isinstance(chosen, str) else [chosen]
        if not refs:
            raise UsageError("select at least one candidate")
        kept = [self._resolve(r, generation) for r in refs]
        number = kept[0].generation
        if rejected is None:
            dropped = [c for c in self._generations.get(number, ()) if c.id not in {k.id for k in kept}]
        else:
            dropped = [self._resolve(r, number) for r in rejected]
        return self._append(
            "selection",
            {
                "generation": number,
                "chosen": [c.id for c in kept],
                "chosen_index": [c.index for c in kept],
                "rejected": [c.id for c in dropped],
                "reason": reason,
            },
            actor,
        )

    def region_edit(
        self,
        base: ImageSource,
        mask: ImageSource,
        result: ImageSource,
        *,
        mode: str = "inpaint",
        prompt: str | None = None,
        negative: str | None = None,
        strength: float | None = None,
        seed: int | None = None,
        actor: Actor | str = Actor.HUMAN,
        **details: Any,
    ) -> Candidate:
        """Inpaint or outpaint: a person marked a region and asked for it to be redone."""
        if mode not in ("inpaint", "outpaint"):
            raise UsageError("mode is inpaint or outpaint")
        base_digest = self._digest(base)[0]
        mask_image = load_image(mask)[0].convert("L")
        mask_digest = digest_image(mask_image, perceptual=False)
        bbox = mask_image.getbbox()
        histogram = mask_image.point(lambda v: 255 if v >= 128 else 0).histogram()
        area = histogram[255] / float(mask_image.width * mask_image.height)
        result_digest, result_image = self._digest(result)
        number = max(self._generations, default=0) + 1
        candidate = Candidate(number, 0, result_digest, seed)
        result_body = {"index": 0, "seed": seed, **result_digest.to_body()}
        self._thumbnail(result_image, result_body)
        mask_body: dict[str, Any] = {
            **mask_digest.to_body(),
            "bbox": None if bbox is None else list(bbox),
            "area_fraction": round(area, 6),
        }
        if self.thumbnails:
            mask_body["blob_sha256"] = self.store.put_blob(self.journal, make_thumbnail(mask_image), "image/webp")
        body: dict[str, Any] = {
            "generation": number,
            "mode": mode,
            "base": base_digest.to_body(),
            "mask": mask_body,
            **self._public_prompt(
                prompt if prompt is not None else self._prompt[0],
                negative if negative is not None else self._prompt[1],
                self._private_prompt or self.private_prompts,
            ),
            "strength": None if strength is None else float(strength),
            "seed": seed,
            "result": result_body,
        }
        body.update(details)
        self._append("edit.region", body, actor)
        self._generations[number] = (candidate,)
        self._last_generation = number
        return candidate

    def manual_edit(
        self,
        before: ImageSource,
        after: ImageSource,
        *,
        tool: str,
        description: str,
        area_fraction: float | None = None,
        actor: Actor | str = Actor.HUMAN,
        operation: str = "paint",
    ) -> Candidate:
        """A person changed the image by hand (paint, crop, upscale, colour...)."""
        before_digest = self._digest(before)[0]
        after_digest, after_image = self._digest(after)
        number = max(self._generations, default=0) + 1
        candidate = Candidate(number, 0, after_digest)
        after_body = {"index": 0, **after_digest.to_body()}
        self._thumbnail(after_image, after_body)
        self._append(
            "edit.manual",
            {
                "generation": number,
                "operation": operation,
                "tool": tool,
                "description": description,
                "area_fraction": area_fraction,
                "before": before_digest.to_body(),
                "result": after_body,
            },
            actor,
        )
        self._generations[number] = (candidate,)
        self._last_generation = number
        return candidate

    def import_image(
        self,
        image: ImageSource,
        *,
        made_by_person: bool,
        source: str | None = None,
        actor: Actor | str = Actor.HUMAN,
    ) -> Candidate:
        """An outside image brought in (a sketch, a photo, another tool's output)."""
        digest, decoded = self._digest(image)
        number = max(self._generations, default=0) + 1
        candidate = Candidate(number, 0, digest)
        body = {"index": 0, **digest.to_body()}
        self._thumbnail(decoded, body)
        self._append(
            "import.image",
            {"generation": number, "made_by_person": made_by_person, "source": source, "result": body},
            actor,
        )
        self._generations[number] = (candidate,)
        self._last_generation = number
        return candidate

    def import_metadata(self, result: Any, *, actor: Actor | str = Actor.AUTOMATION) -> list[SignedEntry]:
        """Steps another tool wrote (see `provenance.importers`): imported, not witnessed."""
        items = [
            NewEntry(
                "import.metadata",
                {
                    "witnessed": False,
                    "tool": step.tool,
                    "source": result.source,
                    "prompt": step.prompt,
                    "negative_prompt": step.negative_prompt,
                    "parameters": step.parameters,
                    "skipped": list(result.skipped),
                },
                _actor(actor),
            )
            for step in result.steps
        ]
        return self.store.append_many(self.journal, items, key=self.key)

    def note(self, text: str, *, actor: Actor | str = Actor.HUMAN) -> SignedEntry:
        """A note of intent or explanation, in the author's words."""
        return self._append("note", {"text": text}, actor)

    def export(
        self,
        image: ImageSource,
        path: str | os.PathLike[str],
        *,
        mode: str = "embed",
        format: str | None = None,
        quality: int = 92,
    ) -> Path:
        """Save the final image with its journal bound to it (see `provenance.binding`)."""
        from .binding import save_and_attach

        return save_and_attach(self, image, Path(path), mode=mode, format=format, quality=quality)

    def seal(self, reason: str | None = None) -> SignedEntry:
        return self.store.seal(self.journal, key=self.key, reason=reason)

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self._parameters)

    @property
    def started(self) -> _dt.datetime:
        return next(self.store.entries(self.journal)).entry.time


def _digest_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "pixel_sha256": body.get("pixel_sha256", ""),
        "width": int(body.get("width", 0)),
        "height": int(body.get("height", 0)),
        "mode": str(body.get("mode", "")),
        "phash": body.get("phash"),
        "file_sha256": body.get("file_sha256"),
    }
