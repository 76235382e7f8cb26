"""Where LIME and KernelSHAP spend their time on small images, with default settings.

For 32 images of 32x32 and of 64x64 pixels (a noisy background, a grey square and
a coloured square) and 200 samples per image, prints the superpixels per image
and the seconds spent in segmentation, in the model, and in the wrapped package
(sampling and the surrogate fit), from ``analyzer.last_timings``.

Run from the repository root: PYTHONPATH=. python benchmarks/bench_superpixels.py
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_explain.analyzers.perturbation import KernelShap, Lime  # noqa: E402

IMAGES = 32
SAMPLES = 200


def images_with_squares(size, count=IMAGES, seed=0):
    rng = np.random.default_rng(seed)
    side = max(2, size // 8)
    images = rng.uniform(0.25, 0.75, (count, size, size, 3)).astype("float32")
    for index, image in enumerate(images):
        grey, colour = rng.integers(0, size - side + 1, (2, 2))
        image[grey[0] : grey[0] + side, grey[1] : grey[1] + side] = 0.5
        image[colour[0] : colour[0] + side, colour[1] : colour[1] + side] = (
            [1.0, 0.0, 0.0] if index % 2 == 0 else [0.0, 0.0, 1.0]
        )
    return images


def cnn(size):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )


def superpixels(explanation):
    """Superpixels of one image: lime's label map, or shap's one value per superpixel."""
    if hasattr(explanation, "segments"):
        return len(np.unique(explanation.segments))
    return len(explanation.values)


def main():
    print(f"{IMAGES} images, {SAMPLES} samples each, default segmentation and baseline")
    print(
        f"{'method':<11} {'size':>5} {'segments':>9} {'segmentation':>13} {'model':>7} "
        f"{'surrogate':>10} {'total':>7}  (seconds)"
    )
    for size in (32, 64):
        x = images_with_squares(size)
        model = cnn(size)
        for cls in (Lime, KernelShap):
            analyzer = cls(model, samples=SAMPLES, seed=0)
            analyzer.analyze(x[:1])  # trace the model call once
            began = time.perf_counter()
            analyzer.analyze(x)
            total = time.perf_counter() - began
            timings = analyzer.last_timings
            segments = np.mean([superpixels(item) for item in analyzer.last_explanations])
            print(
                f"{cls.__name__:<11} {size:>5} {segments:>9.1f} "
                f"{timings['segmentation']:>13.3f} {timings['model']:>7.3f} "
                f"{timings['surrogate']:>10.3f} {total:>7.3f}"
            )


if __name__ == "__main__":
    main()
