"""A rendered stand-in for the paper's singlehole-part-tapping video (section 4).

The scene is a repetitive industrial operation seen from above: a conveyor carries one part
per cycle from left to right along a guide rail. The truth of a frame is 1 when the part is
seated against the guide (no gap between the rail and the part's top edge) and 0 when it rides
a few pixels off it (a gap of 3 to 7 px at 320x240). The condition is a thin line of belt
between two edges, which an ImageNet-pretrained CNN does not read out of the box; everything
else in the frame (lighting, noise, blur, camera shake, a hand, a passing shadow, clutter on
the bench) varies independently of it.

Frames are correlated as in a real video: the part and the belt move smoothly, the nuisances
are slow AR(1) processes, and the truth is constant within a cycle and changes in runs of
1 to 4 cycles. See docs/standin.md for how this differs from the paper's data.

:func:`plan` draws every frame's state (pure numpy), :func:`render` draws one state, and
:func:`write_standin_video` writes the video in the codec the ingester reads.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# Motion JPEG in AVI, as gtx_stream.ops.synthetic.FOURCC (offline may not import ops).
FOURCC = "MJPG"
SIZE = (320, 240)  # width, height
DEFAULT_FRAMES = 1050  # the paper's singlehole-part-tapping set
BALANCE = (0.4, 0.6)  # the share of touching frames a plan keeps to (when it can)
GAP_PX = (3, 7)  # gap between rail and part when not touching, at 240 px height


@dataclass(frozen=True)
class Layout:
    """Where the fixed scene lies for a frame ``size``; y coordinates grow downwards."""

    width: int
    height: int
    rail_top: int
    rail_bottom: int  # first row below the rail: a touching part's top row
    belt_bottom: int

    @classmethod
    def of(cls, size: tuple[int, int]) -> Layout:
        width, height = size
        return cls(width, height, height * 66 // 240, height * 80 // 240, height * 190 // 240)

    def px(self, v: float) -> int:
        """A length given for 240 px height, at this height."""
        return max(1, round(v * self.height / 240))


@dataclass(frozen=True)
class FrameState:
    """Everything :func:`render` needs for one frame, so that frames render in any order."""

    index: int
    cycle: int
    truth: int  # 1: the part touches the guide rail
    part_x: int  # left edge
    part_w: int
    part_h: int
    gap: int  # rows of belt between the rail and the part (0 when touching)
    tint: float  # the part's brightness, per cycle
    belt_offset: int
    gain: float  # global lighting
    tilt: float  # left-to-right lighting gradient
    shake: tuple[float, float]
    blur: float  # Gaussian sigma, px
    noise: float  # sensor noise sigma, grey levels
    hand: tuple[int, int] | None  # palm centre
    shadow_x: int | None  # centre of a passing shadow
    tool: tuple[int, int, float]  # a wrench on the bench: x, y, angle (degrees)


def _ar1(rng: np.random.Generator, n: int, corr: float, scale: float) -> np.ndarray:
    """A stationary AR(1) series with lag-one correlation ``corr`` and std ``scale``."""
    out = np.empty(n)
    x = rng.normal(0.0, scale)
    innovation = scale * math.sqrt(1 - corr**2)
    for t in range(n):
        x = corr * x + rng.normal(0.0, innovation)
        out[t] = x
    return out


def _cycle_truths(rng: np.random.Generator, lengths: Sequence[int]) -> list[int]:
    """Truth per cycle in alternating runs of 1-4 cycles, redrawn until the frames balance."""
    total = sum(lengths)
    best: list[int] = []
    best_off = math.inf
    for _ in range(200):
        truths: list[int] = []
        value = int(rng.integers(0, 2))
        while len(truths) < len(lengths):
            truths += [value] * int(rng.integers(1, 5))
            value = 1 - value
        truths = truths[: len(lengths)]
        share = sum(n for n, t in zip(lengths, truths, strict=True) if t) / total
        off = max(BALANCE[0] - share, share - BALANCE[1], 0.0)
        if off < best_off:
            best, best_off = truths, off
        if off == 0.0:
            break
    return best


def plan(n_frames: int, seed: int, size: tuple[int, int] = SIZE) -> list[FrameState]:
    """The state of every frame; the same for the same arguments."""
    if n_frames < 1:
        raise ValueError("n_frames must be at least 1")
    width, height = size
    if width < 160 or height < 120:
        raise ValueError("size must be at least 160x120")
    lay = Layout.of(size)
    rng = np.random.default_rng(seed)
    lengths: list[int] = []
    while sum(lengths) < n_frames:
        lengths.append(int(rng.integers(30, 41)))  # ~30 cycles in 1050 frames
    truths = _cycle_truths(rng, lengths)
    gain = 1 + 0.12 * np.sin(2 * np.pi * np.arange(n_frames) / 400 + rng.uniform(0, 2 * np.pi))
    gain += _ar1(rng, n_frames, 0.98, 0.08)
    tilt = _ar1(rng, n_frames, 0.99, 0.12)
    shake_x, shake_y = _ar1(rng, n_frames, 0.8, 1.0), _ar1(rng, n_frames, 0.8, 1.0)
    blur = 0.3 + np.abs(_ar1(rng, n_frames, 0.95, 0.6))
    noise = 2.0 + np.abs(_ar1(rng, n_frames, 0.95, 3.0))
    states: list[FrameState] = []
    travelled = 0
    for cycle, (length, truth) in enumerate(zip(lengths, truths, strict=True)):
        part_w = lay.px(rng.uniform(50, 66))
        part_h = lay.px(rng.uniform(36, 46))
        gap = 0 if truth else lay.px(int(rng.integers(GAP_PX[0], GAP_PX[1] + 1)))
        tint = rng.uniform(0.85, 1.1)
        start = lay.px(8) + int(rng.integers(0, lay.px(12)))
        stop = width - part_w - lay.px(8) - int(rng.integers(0, lay.px(12)))
        hand_x = int(rng.integers(width // 5, width * 4 // 5)) if rng.random() < 0.4 else None
        shadow = rng.random() < 0.3
        shadow_dir = 1 if rng.random() < 0.5 else -1
        tool = (
            int(rng.integers(lay.px(20), width - lay.px(40))),
            int(rng.integers(lay.belt_bottom + lay.px(12), height - lay.px(10))),
            float(rng.uniform(-40, 40)),
        )
        for step in range(length):
            t = len(states)
            if t == n_frames:
                break
            phase = step / max(1, length - 1)
            # eased motion: the part accelerates off the last station and slows into the next
            x = round(start + (stop - start) * (0.5 - 0.5 * math.cos(math.pi * phase)))
            if step > 0:
                travelled += x - states[-1].part_x
            reach = math.sin(math.pi * phase)  # a hand reaches in and out over the cycle
            hand = None
            if hand_x is not None and reach > 0.15:
                hand = (hand_x + round(lay.px(20) * phase), height - round(lay.px(75) * reach))
            shadow_x = None
            if shadow:
                span = width + lay.px(200)
                pos = -lay.px(100) + round(span * phase)
                shadow_x = pos if shadow_dir > 0 else width - pos
            states.append(
                FrameState(
                    index=t,
                    cycle=cycle,
                    truth=truth,
                    part_x=x,
                    part_w=part_w,
                    part_h=part_h,
                    gap=gap,
                    tint=float(tint),
                    belt_offset=travelled,
                    gain=float(gain[t]),
                    tilt=float(tilt[t]),
                    shake=(float(shake_x[t]), float(shake_y[t])),
                    blur=float(blur[t]),
                    noise=float(noise[t]),
                    hand=hand,
                    shadow_x=shadow_x,
                    tool=tool,
                )
            )
    return states


@functools.lru_cache(maxsize=4)
def _scene(lay: Layout, seed: int) -> np.ndarray:
    """The static background for a seed: wall, drill unit, rail, bench with bolts (read-only)."""
    rng = np.random.default_rng([seed, 1])
    w, h = lay.width, lay.height
    img = np.zeros((h, w, 3), np.uint8)
    ramp = np.linspace(45, 75, lay.rail_top).astype(np.uint8)
    img[: lay.rail_top] = ramp[:, None, None]
    cv2.rectangle(img, (w * 3 // 5, 0), (w * 3 // 5 + lay.px(70), lay.rail_top - lay.px(6)),
                  (88, 92, 96), -1)  # fmt: skip
    cv2.circle(img, (w * 3 // 5 + lay.px(35), lay.rail_top - lay.px(18)), lay.px(9), (35, 35, 40),
               -1, cv2.LINE_AA)  # fmt: skip
    img[lay.rail_top : lay.rail_bottom] = (70, 72, 78)
    img[lay.rail_top : lay.rail_top + lay.px(2)] = (130, 132, 138)  # the rail's lit edge
    for x in range(lay.px(24), w, lay.px(48)):
        cy = (lay.rail_top + lay.rail_bottom) // 2
        cv2.circle(img, (x, cy), lay.px(3), (110, 110, 115), -1, cv2.LINE_AA)
    img[lay.belt_bottom :] = (58, 74, 92)  # a brown-ish bench
    for _ in range(6):
        x = int(rng.integers(lay.px(8), w - lay.px(8)))
        y = int(rng.integers(lay.belt_bottom + lay.px(6), h - lay.px(6)))
        r = lay.px(rng.uniform(3, 6))
        cv2.circle(img, (x, y), r, (150, 150, 155), -1, cv2.LINE_AA)
        cv2.circle(img, (x, y), max(1, r // 2), (90, 90, 95), -1, cv2.LINE_AA)
    img.flags.writeable = False
    return img


def _draw_belt(img: np.ndarray, lay: Layout, offset: int) -> None:
    img[lay.rail_bottom : lay.belt_bottom] = (100, 100, 100)
    pitch = lay.px(24)
    for x in range(offset % pitch - pitch, lay.width, pitch):
        cv2.line(img, (x, lay.rail_bottom), (x, lay.belt_bottom - 1), (84, 84, 84), lay.px(2))


def _draw_part(img: np.ndarray, lay: Layout, s: FrameState) -> None:
    x0, y0 = s.part_x, lay.rail_bottom + s.gap
    x1, y1 = x0 + s.part_w - 1, y0 + s.part_h - 1
    off = lay.px(3)
    cv2.rectangle(img, (x0 + off, y0 + off), (x1 + off, y1 + off), (62, 62, 62), -1)  # shadow
    base = np.clip(np.array([176, 184, 190]) * s.tint, 0, 255)
    cv2.rectangle(img, (x0, y0), (x1, y1), tuple(float(c) for c in base), -1)
    cv2.line(img, (x0, y1), (x1, y1), tuple(float(c) * 0.7 for c in base), lay.px(2))
    centre = ((x0 + x1) // 2, (y0 + y1) // 2 + lay.px(2))
    cv2.circle(img, centre, lay.px(7), (120, 124, 128), -1, cv2.LINE_AA)
    cv2.circle(img, centre, lay.px(5), (30, 30, 34), -1, cv2.LINE_AA)  # the tapped hole


def _draw_tool(img: np.ndarray, lay: Layout, tool: tuple[int, int, float]) -> None:
    x, y, angle = tool
    box = cv2.boxPoints(((x, y), (lay.px(44), lay.px(6)), angle))
    cv2.fillPoly(img, [box.astype(np.int32)], (120, 40, 170), cv2.LINE_AA)
    dx = round(lay.px(22) * math.cos(math.radians(angle)))
    dy = round(lay.px(22) * math.sin(math.radians(angle)))
    cv2.circle(img, (x + dx, y + dy), lay.px(7), (120, 40, 170), -1, cv2.LINE_AA)


def _draw_hand(img: np.ndarray, lay: Layout, palm: tuple[int, int]) -> None:
    skin = (120, 150, 200)
    x, y = palm
    cv2.rectangle(img, (x - lay.px(14), y), (x + lay.px(14), lay.height), (90, 70, 50), -1)
    cv2.ellipse(img, (x, y), (lay.px(20), lay.px(16)), 0, 0, 360, skin, -1, cv2.LINE_AA)
    for k in range(4):
        fx = x - lay.px(15) + k * lay.px(10)
        cv2.ellipse(img, (fx, y - lay.px(18)), (lay.px(4), lay.px(11)), 0, 0, 360, skin, -1,
                    cv2.LINE_AA)  # fmt: skip


def render(state: FrameState, seed: int, size: tuple[int, int] = SIZE, *, clean: bool = False
           ) -> np.ndarray:  # fmt: skip
    """One BGR frame. ``clean`` leaves out every nuisance but the part's own variation."""
    lay = Layout.of(size)
    img = _scene(lay, seed).copy()
    _draw_belt(img, lay, state.belt_offset)
    _draw_part(img, lay, state)
    if clean:
        return img
    _draw_tool(img, lay, state.tool)
    if state.hand is not None:
        _draw_hand(img, lay, state.hand)
    light = np.full((lay.height, lay.width), state.gain, np.float32)
    light *= 1 + state.tilt * np.linspace(-0.5, 0.5, lay.width, dtype=np.float32)[None, :]
    if state.shadow_x is not None:
        mask = np.zeros((lay.height // 4, lay.width // 4), np.float32)
        cv2.ellipse(mask, (state.shadow_x // 4, lay.height // 8), (lay.px(60) // 4,
                    lay.px(90) // 4), 20, 0, 360, 1.0, -1)  # fmt: skip
        soft = cv2.GaussianBlur(mask, (0, 0), lay.px(12) / 4)
        light *= 1 - 0.4 * cv2.resize(soft, (lay.width, lay.height))
    dx, dy = state.shake
    shift = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    img = cv2.warpAffine(img, shift, (lay.width, lay.height), borderMode=cv2.BORDER_REFLECT)
    if state.blur > 0.4:
        img = cv2.GaussianBlur(img, (0, 0), state.blur)
    out = img.astype(np.float32) * light[:, :, None]
    # OpenCV's generator (per thread) is ten times numpy's speed here; seeding it per frame
    # makes any frame render alone, the same
    cv2.setRNGSeed((seed * 1_000_003 + state.index) % 2**31)
    noise = np.empty_like(out)
    cv2.randn(noise, np.zeros(3), np.full(3, state.noise))
    return cv2.convertScaleAbs(out + noise)  # rounds and saturates to 0..255


def render_all(n_frames: int, seed: int, size: tuple[int, int] = SIZE, *, clean: bool = False
               ) -> Iterator[tuple[FrameState, np.ndarray]]:  # fmt: skip
    for state in plan(n_frames, seed, size):
        yield state, render(state, seed, size, clean=clean)


def strip_indices(truths: Sequence[int], per_class: int = 4) -> list[int]:
    """Frames for a sample strip: ``per_class`` of each truth, spread over the video."""
    picked: list[int] = []
    for value in (1, 0):
        where = [i for i, t in enumerate(truths) if t == value]
        if where:
            spots = np.linspace(0, len(where) - 1, min(per_class, len(where)))
            picked += [where[round(s)] for s in spots]
    return picked


def strip_image(frames: Sequence[tuple[int, int, np.ndarray]], columns: int = 4) -> np.ndarray:
    """A grid of ``(index, truth, frame)`` with a caption under each frame."""
    if not frames:
        raise ValueError("no frames for the strip")
    h, w = frames[0][2].shape[:2]
    caption = 22
    cells = []
    for index, truth, frame in frames:
        cell = np.full((h + caption, w, 3), 255, np.uint8)
        cell[:h] = frame
        text = f"frame {index}: " + ("touching (1)" if truth else "gap (0)")
        cv2.putText(cell, text, (6, h + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                    cv2.LINE_AA)  # fmt: skip
        cells.append(cell)
    while len(cells) % columns:
        cells.append(np.full_like(cells[0], 255))
    rows = [np.hstack(cells[i : i + columns]) for i in range(0, len(cells), columns)]
    return np.vstack(rows)


def write_standin_video(
    path: str | os.PathLike[str],
    n_frames: int = DEFAULT_FRAMES,
    seed: int = 0,
    *,
    fps: float = 10,
    size: tuple[int, int] = SIZE,
    strip: str | os.PathLike[str] | None = None,
) -> list[int]:
    """Write the stand-in video (MJPG/AVI) and optionally a sample strip (PNG); return truths."""
    states = plan(n_frames, seed, size)
    truths = [s.truth for s in states]
    wanted = set(strip_indices(truths)) if strip is not None else set()
    kept: list[tuple[int, int, np.ndarray]] = []
    writer = cv2.VideoWriter(os.fspath(path), cv2.VideoWriter.fourcc(*FOURCC), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {FOURCC} video to {path}")
    try:
        for state in states:
            frame = render(state, seed, size)
            writer.write(frame)
            if state.index in wanted:
                kept.append((state.index, state.truth, frame))
    finally:
        writer.release()
    if strip is not None:
        kept.sort(key=lambda k: (-k[1], k[0]))
        if not cv2.imwrite(os.fspath(strip), strip_image(kept)):
            raise RuntimeError(f"OpenCV cannot write {strip}")
    return truths
