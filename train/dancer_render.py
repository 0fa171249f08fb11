"""A numpy renderer of clothed synthetic people ("dancers") posed by train.mocap.

A ``Character`` is a seeded look (skin, hair, shirt, legwear, shoes, build, backdrop). Its body is built per
frame from the skeleton's link frames as ray-traced primitives: capsules, spheres and ellipsoids (an ellipsoid-
sectioned capsule covers all three), coloured in bands along their axis (sleeves, stripes, shorts) and, for the
head, by direction (hair cap, face, eyes, mouth). Rendering is vectorised: every primitive is intersected with
the pixel rays inside its projected bounding box, a z-buffer keeps the nearest, then Lambert shading, a tiled
floor with soft contact shadows, and supersampling with an area downsample for anti-aliasing.

Cameras are pinholes with a lens shift; ``framed_cameras`` places a clip's (possibly moving) cameras so that
the whole figure over the whole clip fills a given share of the frame height.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from train import mocap

PARTS = ("background", "head", "neck", "torso", "hips", "upper_arm", "forearm", "hand", "thigh", "shin", "foot")
FACE_POINTS = (0, 14, 15, 16, 17)  # nose, eyes, ears in OpenPose-18
FACE_AWAY_DEGREES = 100.0          # a face point turned further than this from the camera is marked missing
SKIN = ((255, 224, 189), (241, 194, 150), (224, 172, 125), (198, 140, 95), (150, 100, 65), (95, 62, 40))
HAIR = {"black": (28, 24, 24), "dark brown": (62, 42, 28), "brown": (115, 75, 45), "blonde": (222, 190, 120),
        "red": (160, 70, 35), "grey": (165, 165, 165)}
SHIRT = {"red": (205, 35, 40), "blue": (40, 80, 200), "green": (45, 150, 65), "yellow": (240, 205, 45),
         "white": (238, 238, 238), "black": (32, 32, 36), "orange": (240, 125, 35), "purple": (125, 55, 165),
         "pink": (240, 130, 180), "grey": (130, 130, 135), "teal": (25, 145, 145), "navy": (30, 40, 100)}
LEGWEAR = {"blue": (55, 85, 155), "black": (35, 35, 40), "grey": (115, 115, 120), "beige": (205, 185, 145),
           "white": (232, 232, 228), "brown": (105, 72, 48), "olive": (85, 95, 50)}
SHOES = {"white": (240, 240, 240), "black": (30, 30, 30), "red": (190, 40, 40), "brown": (110, 70, 40),
         "grey": (140, 140, 145)}
EYE, MOUTH = (0.12, 0.1, 0.1), (0.55, 0.25, 0.25)
EYE_DIRECTIONS = (mocap.HEAD_POINTS["right_eye"], mocap.HEAD_POINTS["left_eye"])
MOUTH_DIRECTION = (0.92, -0.42, 0.0)
EYE_COS = np.cos(0.19)
SHOE_TURN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])  # shoe y along the foot (ankle x)
LIGHT = (-0.35, 0.6, -0.75)   # towards the light in camera axes (right, up, forward): from the upper left front


def _rgb(colour) -> tuple[float, float, float]:
    return tuple(float(c) / 255 for c in colour)


@dataclass(frozen=True)
class Character:
    """A dancer's look. Colours are RGB in [0, 1]; ``build`` scales torso width, torso depth and limb radii."""
    seed: int
    skin: tuple[float, float, float]
    hair_name: str
    hair: tuple[float, float, float]
    hair_style: str                      # "short" | "long"
    shirt_name: str
    shirt: tuple[float, float, float]
    pattern: str                         # "solid" | "striped" | "two-tone"
    second_name: str
    second: tuple[float, float, float]   # stripes or lower half colour
    stripe_period: float                 # metres
    sleeves: str                         # "short" | "long"
    legwear: str                         # "trousers" | "shorts"
    legwear_name: str
    legwear_colour: tuple[float, float, float]
    shoes_name: str
    shoes: tuple[float, float, float]
    build: tuple[float, float, float]
    background: tuple[float, float, float]
    floor: tuple[float, float, float]

    @classmethod
    def sample(cls, seed: int) -> "Character":
        """A look drawn from ``seed`` alone (np.random.default_rng)."""
        rng = np.random.default_rng(seed)

        def pick(table: dict) -> tuple[str, tuple]:
            name = list(table)[rng.integers(len(table))]
            return name, _jittered(table[name], rng)
        hair_name, hair = pick(HAIR)
        shirt_name, shirt = pick(SHIRT)
        second_table = {k: v for k, v in SHIRT.items() if _contrast(SHIRT[k], SHIRT[shirt_name]) > 120}
        second_name, second = pick(second_table)
        legwear_name, legwear_colour = pick(LEGWEAR)
        shoes_name, shoes = pick(SHOES)
        backdrop = _backdrop(rng)
        return cls(seed=seed, skin=_jittered(SKIN[rng.integers(len(SKIN))], rng), hair_name=hair_name, hair=hair,
                   hair_style=("short", "long")[rng.integers(2)], shirt_name=shirt_name, shirt=shirt,
                   pattern=("solid", "striped", "two-tone")[rng.choice(3, p=[0.5, 0.25, 0.25])],
                   second_name=second_name, second=second, stripe_period=float(rng.uniform(0.09, 0.12)),
                   sleeves=("short", "long")[rng.integers(2)], legwear=("trousers", "shorts")[rng.choice(2, p=[0.7, 0.3])],
                   legwear_name=legwear_name, legwear_colour=legwear_colour, shoes_name=shoes_name, shoes=shoes,
                   build=tuple(float(v) for v in rng.uniform([0.9, 0.9, 0.9], [1.12, 1.1, 1.15])),
                   background=backdrop[0], floor=backdrop[1])

    def describe(self) -> str:
        """A caption, e.g. "a person with black long hair, a red striped shirt with short sleeves, blue trousers
        and white shoes"."""
        shirt = {"solid": self.shirt_name, "striped": f"{self.shirt_name} and {self.second_name} striped",
                 "two-tone": f"{self.shirt_name} and {self.second_name} two-tone"}[self.pattern]
        article = "an" if shirt[0] in "aeiou" else "a"
        return (f"a person with {self.hair_name} {self.hair_style} hair, {article} {shirt} shirt with {self.sleeves} "
                f"sleeves, {self.legwear_name} {self.legwear} and {self.shoes_name} shoes")


def _jittered(colour, rng: np.random.Generator) -> tuple[float, float, float]:
    return tuple(float(np.clip(c + rng.uniform(-10, 10), 0, 255)) / 255 for c in colour)


def _contrast(a, b) -> float:
    return float(np.abs(np.subtract(a, b)).sum())


def _backdrop(rng: np.random.Generator) -> tuple[tuple, tuple]:
    """A muted wall colour and a darker, differently tinted floor."""
    hue = rng.uniform(0, 1, 2)
    wall = _hsv(hue[0], rng.uniform(0.05, 0.3), rng.uniform(0.55, 0.9))
    floor = _hsv(hue[1], rng.uniform(0.05, 0.35), rng.uniform(0.3, 0.6))
    return wall, floor


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    import colorsys
    return tuple(float(c) for c in colorsys.hsv_to_rgb(h, s, v))


@dataclass(frozen=True)
class Camera:
    """A pinhole: ``axes`` rows are the right, up and forward directions in the world; ``focal`` and
    ``centre`` (the principal point, x y) are in pixels of a ``size`` (width, height) image."""
    position: np.ndarray
    axes: np.ndarray
    focal: float
    centre: tuple[float, float]
    size: tuple[int, int]

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates [..., 2] (pixel i spans [i, i + 1)) and depths [...] of world points [..., 3]."""
        x, y, z = np.moveaxis((points - self.position) @ self.axes.T, -1, 0)
        return np.stack([self.centre[0] + self.focal * x / z, self.centre[1] - self.focal * y / z], -1), z

    def rays(self, supersample: int) -> np.ndarray:
        """Ray directions [H*s, W*s, 3] through subpixel centres, scaled to unit forward component (so the ray
        parameter is the depth)."""
        width, height = self.size
        xs = ((np.arange(width * supersample) + 0.5) / supersample - self.centre[0]) / self.focal
        ys = ((np.arange(height * supersample) + 0.5) / supersample - self.centre[1]) / self.focal
        right, up, forward = self.axes.astype(np.float32)
        xs, ys = xs.astype(np.float32), ys.astype(np.float32)
        return forward + xs[None, :, None] * right - ys[:, None, None] * up


def look_at(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera axes (rows right, up, forward) looking from ``position`` at ``target`` with the world's y up."""
    forward = (target - position) / np.linalg.norm(target - position)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(right, forward), forward])


def orbit_direction(yaw: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """Unit vectors [..., 3] from a subject to a camera at heading ``yaw`` (radians about +y; 0 = +x) raised by
    ``elevation`` radians."""
    yaw, elevation = np.asarray(yaw, float), np.asarray(elevation, float)
    return np.stack([np.cos(elevation) * np.cos(yaw), np.sin(elevation), -np.cos(elevation) * np.sin(yaw)], -1)


def framed_cameras(points: np.ndarray, radii: np.ndarray, targets: np.ndarray, yaws: np.ndarray,
                   elevations: np.ndarray, distances: np.ndarray, size: tuple[int, int], fill: float,
                   side_fill: float = 0.9) -> list[Camera]:
    """Per-frame cameras orbiting ``targets`` [T, 3] at ``yaws``/``elevations``/``distances`` [T] that share a
    focal length and lens shift: the figure's points [T, P, 3] padded by ``radii`` [P] span ``fill`` of the image
    height over the whole clip (and at most ``side_fill`` of its width), centred."""
    positions = targets + distances[:, None] * orbit_direction(yaws, elevations)
    axes = np.stack([look_at(p, t) for p, t in zip(positions, targets)])
    local = np.einsum("tpk,tjk->tpj", points - positions[:, None], axes)
    depth = np.maximum(local[..., 2] - radii, 1e-3)
    low, high = (local[..., :2] - radii[:, None]) / depth[..., None], (local[..., :2] + radii[:, None]) / depth[..., None]
    (x0, y0), (x1, y1) = low.reshape(-1, 2).min(0), high.reshape(-1, 2).max(0)
    width, height = size
    focal = float(min(fill * height / (y1 - y0), side_fill * width / (x1 - x0)))
    centre = (float(width / 2 - focal * (x0 + x1) / 2), float(height / 2 + focal * (y0 + y1) / 2))
    return [Camera(p, a, focal, centre, size) for p, a in zip(positions, axes)]


@dataclass(frozen=True)
class Primitive:
    """A capsule of half length ``half_length`` along local y with an ellipsoidal section and caps of
    ``semi_axes`` (metres); ``rotation`` columns are its local axes in the world; ``paint`` maps local points
    [N, 3] (metres, from ``centre``) to albedo [N, 3]."""
    part: int
    centre: np.ndarray
    rotation: np.ndarray
    semi_axes: np.ndarray
    half_length: float
    paint: Callable[[np.ndarray], np.ndarray]


def paint_bands(thresholds, colours) -> Callable[[np.ndarray], np.ndarray]:
    """Colour by local y: ``colours[i]`` between ``thresholds[i - 1]`` and ``thresholds[i]`` (ascending)."""
    thresholds, colours = np.asarray(thresholds, float), np.asarray(colours, float)
    return lambda local: colours[np.searchsorted(thresholds, local[:, 1])]


def paint_head(character: Character) -> Callable[[np.ndarray], np.ndarray]:
    """Hair cap over the top and back, skin face with two eyes and a mouth (local x forward, y up, z right)."""
    eyes = np.array(EYE_DIRECTIONS)
    eyes /= np.linalg.norm(eyes, axis=1, keepdims=True)
    back = -1.0 if character.hair_style == "long" else -0.6

    def paint(local: np.ndarray) -> np.ndarray:
        x, y, z = (local / np.linalg.norm(local, axis=1, keepdims=True)).T
        colour = np.tile(np.asarray(character.skin), (len(local), 1))
        hairline = -0.02 + np.maximum(x, 0) * (0.42 + 0.25 * np.abs(z)) + (back + 0.02) * np.maximum(-x, 0)
        colour[y > hairline] = character.hair
        colour[((np.stack([x, y, z], 1) @ eyes.T) > EYE_COS).any(1)] = EYE
        colour[(np.abs(y - MOUTH_DIRECTION[1]) < 0.05) & (np.abs(z) < 0.22) & (x > 0.6)] = MOUTH
        return colour
    return paint


def _solid(colour) -> Callable[[np.ndarray], np.ndarray]:
    return paint_bands([], [colour])


def _torso_paint(character: Character, offset: float) -> Callable[[np.ndarray], np.ndarray]:
    """The shirt on a torso primitive whose centre sits ``offset`` metres up the chest frame's y."""
    if character.pattern == "striped":
        period = character.stripe_period
        edges = np.arange(-6, 6)[:, None] * period + np.array([0.6 * period, period])
        return paint_bands(edges.reshape(-1) - offset, [character.shirt, character.second] * 12 + [character.shirt])
    if character.pattern == "two-tone":
        return paint_bands([-0.02 - offset], [character.second, character.shirt])
    return _solid(character.shirt)


class Body:
    """A character's primitives for each frame of a posed skeleton."""

    def __init__(self, character: Character, skeleton: mocap.Skeleton):
        self.character, self.skeleton = character, skeleton
        self.width, self.depth, self.limbs = character.build
        self.head_centre, self.head_radius = mocap.head_sphere(skeleton)
        self.radius = {link: skeleton.shapes[f"right_{link}"].size[0]  # the URDF's limb capsules
                       for link in ("shoulder", "elbow", "hip", "knee")}

    def _link(self, posed: mocap.Posed, t: int, joint: str) -> tuple[np.ndarray, np.ndarray]:
        j = self.skeleton.index(joint)
        return posed.positions[t, j], posed.rotations[t, j]

    def _in_link(self, posed, t, joint, part, centre, semi, half, paint, turn=None) -> Primitive:
        """A primitive placed in ``joint``'s link frame (``turn`` re-orders its local axes)."""
        position, rotation = self._link(posed, t, joint)
        return Primitive(PARTS.index(part), position + rotation @ np.asarray(centre, float),
                         rotation if turn is None else rotation @ turn, np.asarray(semi, float), half, paint)

    def _bone(self, posed, t, joint, child, part, radius, paint) -> Primitive:
        """A round capsule from ``joint`` to ``child`` (the child hangs along the link's -y)."""
        length = float(np.linalg.norm(self.skeleton.offsets[self.skeleton.index(child)]))
        return self._in_link(posed, t, joint, part, (0, -length / 2, 0), (radius,) * 3, length / 2, paint)

    def _limb_paint(self, child: str, covered: float, cover, bare) -> Callable:
        """Cloth over the first ``covered`` share of the bone ending at ``child``, ``bare`` beyond."""
        length = float(np.linalg.norm(self.skeleton.offsets[self.skeleton.index(child)]))
        return _solid(cover) if covered >= 1 else paint_bands([length / 2 - covered * length], [bare, cover])

    def primitives(self, posed: mocap.Posed, t: int) -> list[Primitive]:
        """The body at frame ``t``: head (and long hair), neck, torso, hips, arms, hands, legs, shoes."""
        c, w, d, k = self.character, self.width, self.depth, self.limbs
        r = self.head_radius
        prims = [self._in_link(posed, t, "neck", "head", self.head_centre, (r, 1.06 * r, r), 0.0, paint_head(c)),
                 self._in_link(posed, t, "neck", "neck", (0.01, 0.09, 0), (0.05 * k,) * 3, 0.08, _solid(c.skin)),
                 self._in_link(posed, t, "chest", "torso", (-0.01, 0.12, 0), (0.105 * d, 0.075, 0.16 * w), 0.075,
                               _torso_paint(c, 0.12)),
                 self._in_link(posed, t, "root", "torso", (0, 0.16, 0), (0.095 * d, 0.07, 0.135 * w), 0.07,
                               _torso_paint(c, 0.16 - self.skeleton.offsets[self.skeleton.index("chest")][1])),
                 self._in_link(posed, t, "root", "hips", (-0.005, 0.01, 0), (0.1 * d, 0.07, 0.145 * w), 0.03,
                               _solid(c.legwear_colour))]
        if c.hair_style == "long":
            prims.append(self._in_link(posed, t, "neck", "head", self.head_centre + (-0.055, -0.07, 0),
                                       (0.075, 0.15, 0.1), 0.0, _solid(c.hair)))
        shorts, long_sleeves = c.legwear == "shorts", c.sleeves == "long"
        for side in ("right", "left"):
            shoulder, elbow, wrist = f"{side}_shoulder", f"{side}_elbow", f"{side}_wrist"
            hip, knee, ankle = f"{side}_hip", f"{side}_knee", f"{side}_ankle"
            forearm_length = float(np.linalg.norm(self.skeleton.offsets[self.skeleton.index(wrist)]))
            prims += [
                self._in_link(posed, t, shoulder, "upper_arm", (0, -0.01, 0), (0.058 * k,) * 3, 0.0, _solid(c.shirt)),
                self._bone(posed, t, shoulder, elbow, "upper_arm", 1.12 * k * self.radius["shoulder"],
                           self._limb_paint(elbow, 1.0 if long_sleeves else 0.5, c.shirt, c.skin)),
                self._bone(posed, t, elbow, wrist, "forearm", 1.02 * k * self.radius["elbow"],
                           _solid(c.shirt if long_sleeves else c.skin)),
                self._in_link(posed, t, elbow, "hand", (0, -forearm_length - 0.045, 0), (0.036 * k, 0.04, 0.03 * k),
                              0.03, _solid(c.skin)),
                self._bone(posed, t, hip, knee, "thigh", (1.22 if shorts else 1.3) * k * self.radius["hip"],
                           self._limb_paint(knee, 0.5 if shorts else 1.0, c.legwear_colour, c.skin)),
                self._bone(posed, t, knee, ankle, "shin", (1.0 if shorts else 1.12) * k * self.radius["knee"],
                           _solid(c.skin if shorts else c.legwear_colour)),
                self._in_link(posed, t, ankle, "foot", (0.045, -0.018, 0), (0.032, 0.045, 0.046), 0.055,
                              _solid(c.shoes), turn=SHOE_TURN)]
        return prims

    def extent_points(self, posed: mocap.Posed) -> tuple[np.ndarray, np.ndarray]:
        """Points [T, P, 3] and radii [P] that together bound the body in every frame (for framing)."""
        skeleton = self.skeleton
        head = mocap.link_point(skeleton, posed, "neck", self.head_centre)
        hands = [mocap.link_point(skeleton, posed, f"{side}_elbow",
                                  skeleton.offsets[skeleton.index(f"{side}_wrist")] - (0, 0.1, 0))
                 for side in ("right", "left")]
        points = np.concatenate([posed.positions, head[:, None], np.stack(hands, 1),
                                 mocap.toe_points(skeleton, posed)], axis=1)
        radii = np.full(points.shape[1], 0.13 * max(self.width, self.limbs))
        radii[len(skeleton.joints)] = 0.16 if self.character.hair_style == "long" else 0.13
        return points, radii



@dataclass
class Rendered:
    """One frame: ``rgb`` uint8 [H, W, 3], body ``mask`` bool [H, W], ``depth`` float32 [H, W] (inf off the body),
    ``parts`` uint8 [H, W] (index into PARTS) and OpenPose-18 ``keypoints`` float32 [18, 3] (x, y, visible)."""
    rgb: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    parts: np.ndarray
    keypoints: np.ndarray


class Primitives:
    """A frame's primitives stacked for batched ray casting."""

    def __init__(self, prims: list[Primitive]):
        self.prims = prims
        self.centres = np.stack([p.centre for p in prims])
        self.rotations = np.stack([p.rotation for p in prims])
        self.semi_axes = np.stack([p.semi_axes for p in prims])
        self.inverse = 1 / self.semi_axes
        self.halves = np.array([p.half_length for p in prims]) * self.inverse[:, 1]  # in unit-radius space

    def pixel_boxes(self, camera: Camera, supersample: int) -> np.ndarray:
        """Subpixel boxes [P, 4] (x0, y0, x1, y1) that can see each primitive (empty when off screen)."""
        axis = self.rotations[:, :, 1] * (self.halves / self.inverse[:, 1])[:, None]
        ends = np.stack([self.centres - axis, self.centres + axis], 1)
        radius = self.semi_axes.max(1)[:, None]
        xy, depth = camera.project(ends)
        reach = camera.focal * radius / np.maximum(depth - radius, 1e-3) * 1.15 + 1 / supersample
        low = np.floor((xy - reach[..., None]).min(1) * supersample)
        high = np.ceil((xy + reach[..., None]).max(1) * supersample) + 1
        size = np.array(camera.size) * supersample
        behind = (depth - radius <= 0.05).any(1)
        low[behind], high[behind] = 0, size
        return np.concatenate([np.clip(low, 0, size), np.clip(high, 0, size)], 1).astype(int)

    def _grouped(self, vectors: np.ndarray, owner: np.ndarray, matrices: np.ndarray) -> np.ndarray:
        """``vectors[n] @ matrices[owner[n]]`` for rows sorted by owner, one matmul per primitive."""
        out = np.empty_like(vectors)
        bounds = np.searchsorted(owner, np.arange(len(self.prims) + 1))
        for i in range(len(self.prims)):
            if bounds[i + 1] > bounds[i]:
                out[bounds[i]:bounds[i + 1]] = vectors[bounds[i]:bounds[i + 1]] @ matrices[i]
        return out

    def cast(self, origin: np.ndarray, directions: np.ndarray, owner: np.ndarray) -> tuple:
        """First hits of rays [N, 3] on primitives ``owner`` [N] (sorted): ray parameters [N] (inf where missed)
        and the rays in each primitive's unit-radius space (origins, directions [N, 3])."""
        dtype = directions.dtype
        o = (np.einsum("pk,pkj->pj", origin - self.centres, self.rotations) * self.inverse).astype(dtype)[owner]
        d = self._grouped(directions, owner, (self.rotations * self.inverse[:, None, :]).astype(dtype))
        (ox, oy, oz), (dx, dy, dz) = o.T, d.T
        half = self.halves[owner].astype(dtype)
        dd = dx * dx + dy * dy + dz * dz
        radial_b, radial_c = dx * ox + dz * oz, ox * ox + oz * oz - 1
        t = np.full(len(d), np.inf, dtype=dtype)
        for cap in (oy - half, oy + half):  # the caps' unit spheres, ray origin relative to each
            b = radial_b + dy * cap
            disc = b * b - dd * (radial_c + cap * cap)
            hit = (-b - np.sqrt(np.maximum(disc, 0))) / dd
            t = np.where((disc >= 0) & (hit > 0) & (hit < t), hit, t)
        a = dx * dx + dz * dz
        disc = radial_b * radial_b - a * radial_c
        with np.errstate(divide="ignore", invalid="ignore"):
            hit = (-radial_b - np.sqrt(np.maximum(disc, 0))) / a
            side = (disc >= 0) & (a > 1e-12) & (np.abs(oy + hit * dy) <= half) & (hit > 0) & (hit < t)
        return np.where(side, hit, t), o, d

    def nearest(self, pixels: np.ndarray, t: np.ndarray, owner: np.ndarray, size: int) -> tuple:
        """Z-buffer: the depth [size] of every subpixel and the sorted indices of the winning entries."""
        depth = np.full(size, np.inf, dtype=t.dtype)
        bounds = np.searchsorted(owner, np.arange(len(self.prims) + 1))
        for i in range(len(self.prims)):  # a primitive's subpixels are distinct
            rows = slice(bounds[i], bounds[i + 1])
            depth[pixels[rows]] = np.minimum(depth[pixels[rows]], t[rows])
        first = np.isfinite(t) & (t == depth[pixels])
        winner = np.full(size, -1)
        winner[pixels[first]] = np.flatnonzero(first)
        return depth, np.sort(winner[winner >= 0])

    def surface(self, o: np.ndarray, d: np.ndarray, t: np.ndarray, owner: np.ndarray) -> tuple:
        """World unit normals [N, 3] and local points [N, 3] (metres from the centre) of hits at ``t``
        (rows sorted by owner)."""
        p = o + t[:, None] * d
        spine = np.zeros_like(p)
        spine[:, 1] = np.clip(p[:, 1], -self.halves[owner], self.halves[owner])
        scaled = (p - spine) * self.inverse[owner]
        normal = self._grouped(scaled, owner, self.rotations.transpose(0, 2, 1).astype(p.dtype))
        nx, ny, nz = normal.T
        return normal / np.sqrt(nx * nx + ny * ny + nz * nz)[:, None], p * self.semi_axes[owner].astype(p.dtype)

    def paint(self, local: np.ndarray, owner: np.ndarray) -> np.ndarray:
        """Albedo [N, 3] of local points (rows sorted by owner), each by its primitive's painter."""
        albedo = np.empty((len(local), 3), dtype=local.dtype)
        bounds = np.searchsorted(owner, np.arange(len(self.prims) + 1))
        for i, prim in enumerate(self.prims):
            if bounds[i + 1] > bounds[i]:
                albedo[bounds[i]:bounds[i + 1]] = prim.paint(local[bounds[i]:bounds[i + 1]])
        return albedo


def _backdrop_image(character: Character, camera: Camera, shadows: np.ndarray) -> np.ndarray:
    """Wall and tiled floor (y = 0) colours [H, W, 3] in [0, 1] with soft shadows around the ground
    ``shadows`` [S, 3] (x, z, radius)."""
    rays = camera.rays(1)
    wall = np.asarray(character.background, np.float32) * (0.92 + 0.08 * np.linspace(1, 0, rays.shape[0]))[:, None, None]
    down = rays[..., 1] < -1e-6
    eye = camera.position.astype(np.float32)
    t = np.where(down, -eye[1] / np.where(down, rays[..., 1], -1), 0)
    x, z = eye[0] + t * rays[..., 0], eye[2] + t * rays[..., 2]
    shade = 1 - 0.06 * ((np.floor(x) + np.floor(z)) % 2)
    for sx, sz, radius in shadows.astype(np.float32):
        shade = shade * (1 - 0.35 * np.exp(-((x - sx) ** 2 + (z - sz) ** 2) / radius ** 2))
    fog = np.exp(-t / 30)[..., None]
    floor = (fog * shade[..., None] * np.asarray(character.floor, np.float32)
             + (1 - fog) * np.asarray(character.background, np.float32))
    return np.where(down[..., None], floor, wall)


def render(character: Character, prims: list[Primitive], camera: Camera, shadows: np.ndarray,
           supersample: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """RGB uint8 [H, W, 3], body mask [H, W], depth [H, W] (inf off the body) and PARTS labels [H, W]: every
    primitive is cast against the subpixel rays in its box, the nearest hit per subpixel is shaded."""
    stack = Primitives(prims)
    rays = camera.rays(supersample)
    width = rays.shape[1]
    pixels, owner = [], []
    for i, (x0, y0, x1, y1) in enumerate(stack.pixel_boxes(camera, supersample)):
        if x1 > x0 and y1 > y0:
            pixels.append((np.arange(y0, y1)[:, None] * width + np.arange(x0, x1)).ravel())
            owner.append(np.full(pixels[-1].size, i))
    pixels, owner = np.concatenate(pixels), np.concatenate(owner)
    t, o, d = stack.cast(camera.position.astype(np.float32), rays.reshape(-1, 3)[pixels], owner)
    depth, hits = stack.nearest(pixels, t, owner, rays.shape[0] * width)
    normal, local = stack.surface(o[hits], d[hits], t[hits], owner[hits])
    light = np.asarray(LIGHT) @ camera.axes
    shade = 0.5 + 0.55 * np.maximum(normal @ (light / np.linalg.norm(light)), 0)
    colour = np.zeros((depth.size, 3), dtype=np.float32)
    colour[pixels[hits]] = np.minimum(stack.paint(local, owner[hits]) * shade[:, None], 1)
    parts = np.zeros(depth.size, dtype=np.uint8)
    parts[pixels[hits]] = np.array([p.part for p in prims], dtype=np.uint8)[owner[hits]]
    shape = rays.shape[:2]
    return _downsampled(colour.reshape(*shape, 3), depth.reshape(shape), parts.reshape(shape),
                        _backdrop_image(character, camera, shadows), supersample)


def _block_sum(image: np.ndarray, s: int) -> np.ndarray:
    """Sums over each output pixel's s x s subpixels of [h*s, w*s, ...]."""
    return sum(image[i::s, j::s] for i in range(s) for j in range(s))


def _downsampled(colour, depth, parts, backdrop, s: int):
    """Area-averaged RGB over the backdrop, mask (half the subpixels on the body), nearest depth, its part."""
    coverage = _block_sum(np.isfinite(depth).astype(np.float32), s) / (s * s)
    rgb = _block_sum(colour, s) / (s * s) + (1 - coverage)[..., None] * backdrop
    near_depth, near_parts = depth[::s, ::s].copy(), parts[::s, ::s].copy()
    for i in range(s):
        for j in range(s):
            nearer = depth[i::s, j::s] < near_depth
            near_depth[nearer], near_parts[nearer] = depth[i::s, j::s][nearer], parts[i::s, j::s][nearer]
    mask = coverage >= 0.5
    return (np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8), mask, np.where(mask, near_depth, np.inf),
            np.where(mask, near_parts, 0).astype(np.uint8))


def project_keypoints(camera: Camera, points: np.ndarray, head_centre: np.ndarray) -> np.ndarray:
    """OpenPose-18 [18, 3] pixel keypoints of 3D ``points`` [18, 3]: confidence 0 outside the frame, and for
    face points (nose, eyes, ears) turned more than FACE_AWAY_DEGREES from the camera."""
    xy, z = camera.project(points)
    width, height = camera.size
    visible = (z > 0) & (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    outward = points[list(FACE_POINTS)] - head_centre
    to_camera = camera.position - points[list(FACE_POINTS)]
    cos = np.einsum("pk,pk->p", outward, to_camera) / (np.linalg.norm(outward, axis=1)
                                                       * np.linalg.norm(to_camera, axis=1))
    visible[list(FACE_POINTS)] &= cos > np.cos(np.radians(FACE_AWAY_DEGREES))
    return np.concatenate([xy, visible[:, None]], 1).astype(np.float32)


def shadow_blobs(skeleton: mocap.Skeleton, posed: mocap.Posed, t: int) -> np.ndarray:
    """Ground shadows (x, z, radius) under the body and the feet, fading as they lift."""
    root = posed.positions[t, skeleton.index("root")]
    blobs = [(root[0], root[2], 0.35 * np.exp(-max(root[1] - 0.9, 0)))]
    for side in ("right", "left"):
        ankle = posed.positions[t, skeleton.index(f"{side}_ankle")]
        blobs.append((ankle[0], ankle[2], 0.14 * np.exp(-4 * max(ankle[1] - 0.05, 0))))
    return np.array(blobs)


def render_frames(character: Character, skeleton: mocap.Skeleton, posed: mocap.Posed, cameras: list[Camera],
                  supersample: int = 2) -> list[Rendered]:
    """Every frame of ``posed`` through its camera, with projected OpenPose-18 keypoints."""
    body = Body(character, skeleton)
    points = mocap.openpose_points(skeleton, posed)
    heads = mocap.link_point(skeleton, posed, "neck", body.head_centre)
    frames = []
    for t, camera in enumerate(cameras):
        rgb, mask, depth, parts = render(character, body.primitives(posed, t), camera,
                                         shadow_blobs(skeleton, posed, t), supersample)
        frames.append(Rendered(rgb, mask, depth, parts, project_keypoints(camera, points[t], heads[t])))
    return frames



def clip_cameras(body: Body, posed: mocap.Posed, fps: float, size: tuple[int, int], yaw: float = 0.0,
                 yaw_drift: float = 0.0, elevation: float = 0.1, distance: float = 4.5, dolly: float = 0.0,
                 fill: float = 0.75) -> list[Camera]:
    """Cameras that follow a clip: they orbit the root's ground path (smoothed over a second) ``yaw`` radians
    from the figure's mean facing, drift by ``yaw_drift`` radians and ``dolly`` (share of the distance) over the
    clip, and frame the whole figure over the whole clip to ``fill`` of the image height."""
    frames = len(posed.positions)
    root = posed.positions[:, body.skeleton.index("root")]
    window = max(1, min(frames, int(round(fps))))
    padded = np.pad(root[:, [0, 2]], ((window // 2, window - 1 - window // 2), (0, 0)), mode="edge")
    ground = np.stack([np.convolve(padded[:, k], np.ones(window) / window, mode="valid") for k in range(2)], 1)
    targets = np.stack([ground[:, 0], np.full(frames, root[:, 1].mean()), ground[:, 1]], 1)
    headings = mocap.facing(body.skeleton, posed)
    mean_facing = float(np.arctan2(np.sin(headings).mean(), np.cos(headings).mean()))
    progress = np.linspace(-0.5, 0.5, frames) if frames > 1 else np.zeros(1)
    points, radii = body.extent_points(posed)
    return framed_cameras(points, radii, targets, mean_facing + yaw + yaw_drift * progress,
                          np.full(frames, elevation), distance * (1 + dolly * progress), size, fill)
