"""The CNN architectures a run may name: each one's feature taps and their widths (no torch here, so a config
is checked against them when it loads)."""

TAPS = {
    "small": ("penultimate",),
    "alexnet": ("fc6", "fc7"),
    "resnet18": ("penultimate",),
    "resnet50": ("penultimate",),
}
DIMS = {"small": 128, "alexnet": 4096, "resnet18": 512, "resnet50": 2048}  # the tower's output at every tap
