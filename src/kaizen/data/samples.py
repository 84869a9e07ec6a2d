"""A folder data set of real photographs, built offline from the two photos scikit-learn ships.

Each class is one region of one photo (a Chinese temple's roof and sky, a flower's petals and leaves); its
examples are crops of random position and size (40 to 100 pixels) from that region, saved as a mix of JPEG and
PNG, grayscale and RGB. Tests and benchmarks train on it to check folders end to end on real pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# class -> (photo, top, left, bottom, right) as fractions of the photo (427 x 640 pixels)
REGIONS = {
    "temple_left": ("china.jpg", 0.0, 0.0, 0.5, 0.5),
    "temple_right": ("china.jpg", 0.5, 0.5, 1.0, 1.0),
    "flower_left": ("flower.jpg", 0.0, 0.0, 0.5, 0.5),
    "flower_right": ("flower.jpg", 0.5, 0.5, 1.0, 1.0),
}
CROP_SIZES = (40, 100)


def make_photo_folder(root: str | Path, per_class: int = 40, seed: int = 0) -> Path:
    """Write `root/<class>/<i>.jpg|png` (`per_class` crops per class of REGIONS) and return `root`."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    by_name = {Path(name).name: image for name, image in zip(photos.filenames, photos.images)}
    rng = np.random.default_rng(seed)
    root = Path(root)
    for name, (photo, top, left, bottom, right) in REGIONS.items():
        pixels = by_name[photo]
        height, width = pixels.shape[:2]
        y0, y1 = int(top * height), int(bottom * height)
        x0, x1 = int(left * width), int(right * width)
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            side_h, side_w = rng.integers(CROP_SIZES[0], CROP_SIZES[1] + 1, size=2)
            y = rng.integers(y0, y1 - side_h + 1)
            x = rng.integers(x0, x1 - side_w + 1)
            image = Image.fromarray(pixels[y : y + side_h, x : x + side_w])
            if rng.random() < 0.3:
                image = image.convert("L")
            suffix = "jpg" if rng.random() < 0.5 else "png"
            image.save(folder / f"{index:03d}.{suffix}")
    return root
