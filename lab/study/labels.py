"""Plain words for arms and jobs in a study's tables and figures: "Adam lr 1e-3", "ResNet18", "no flip, no crop",
not optimizer=adam,optimizer.lr=0.001. A leaf of lab.study: it imports nothing from lab."""
OPTIONS = {
    "model": {"resnet10": "ResNet10", "resnet18": "ResNet18", "resnet34": "ResNet34", "resnet50": "ResNet50"},
    "optimizer": {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "adagrad": "Adagrad", "adagrad_lab": "Adagrad",
                  "rmsprop": "RMSprop"},
    "scheduler": {"none": "constant lr", "multistep": "MultiStepLR", "cosine": "cosine lr", "onecycle": "one-cycle lr"},
    "distill": {"none": "student alone", "soft_target": "soft target", "logits": "logits", "both": "both losses"},
}


def number(value) -> str:
    """0.001 -> 1e-3, 0.0003 -> 3e-4, 0.03 -> 0.03, 1 -> 1."""
    if isinstance(value, float) and 0 < abs(value) < 0.01:
        mantissa, exponent = f"{value:.0e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:g}" if isinstance(value, float) else str(value)


# A recipe component's words when on (with its value) and when off.
NAMED = {"ema.decay": ("EMA", "no EMA"), "augment.erase_p": ("erasing", "no erasing"),
         "loss.label_smoothing": ("smoothing", "no smoothing"), "test_tta": ("TTA", "no TTA"),
         "augment.mix": ("", "no mixing")}


def part(key: str, value) -> str:
    if key in OPTIONS:
        return OPTIONS[key].get(str(value), str(value))
    if key == "optimizer.lr":
        return f"lr {number(value)}"
    if key in NAMED:
        on, off = NAMED[key]
        return off if value in (None, 0, "0", "none", "None", "null") else f"{on} {number(value)}".strip()
    if key == "augment.flip":
        return "flip" if str(value).lower() == "true" else "no flip"
    if key == "augment.crop_padding":
        return f"crop {value}" if value not in (0, "0") else "no crop"
    return f"{key.split('.')[-1]} {number(value)}"


def arm_label(arm: dict) -> str:
    """Plain words for a set of config values, in a fixed order (model, optimizer, lr, the rest)."""
    order = ["model", "optimizer", "optimizer.lr", "scheduler", "distill"]
    keys = sorted((k for k in arm if k != "seed"), key=lambda k: (order.index(k) if k in order else len(order), k))
    return ", ".join(part(k, arm[k]) for k in keys).replace(", lr", " lr") or "the run"
