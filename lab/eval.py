"""python -m lab.eval ckpt_path=PATH [dataset=NAME dataset.root=PATH]: score a checkpoint on a test set.
PATH is a .ckpt file or a run dir of lab.train (its checkpoints/best.ckpt is scored; last.ckpt for a run with
dataset.val_split=0, whose best.ckpt was picked on the test set).

test_tta=flip scores each image as the mean logits of it and its mirror, as lab.train's test_tta=flip does.
Writes eval.json (test_acc, test_acc_top5, per_class_acc keyed by class name, the precision, test_tta) and
confusion_matrix.png to the output dir. The test set is the checkpoint's own dataset config unless dataset=... is
given; images get the checkpoint's preprocessing (its image size and mean/std)."""
import logging
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from lab.augment import flip_averaged
from lab.checkpoint import checkpoint_of
from lab.config import TTA_MODES, register_resolvers
from lab.context import run_context
from lab.errors import CheckpointError, ConfigError, DataError
from lab.noise import wilson_interval
from lab.outcome import run_or_exit
from lab.run_files import atomic_path, write_json
from lab.saved_config import todays_config

register_resolvers()
log = logging.getLogger("lab")


def checkpoint_path(cfg, command: str) -> Path:
    """ckpt_path as a file: as given, or the checkpoint of a run dir (lab.checkpoint.checkpoint_of)."""
    if not cfg.get("ckpt_path"):
        raise ConfigError(f"ckpt_path is not set: python -m {command} ckpt_path=outputs/DATE/TIME/checkpoints/"
                          f"best.ckpt or ckpt_path=outputs/DATE/TIME (lab.train writes best.ckpt and last.ckpt "
                          f"in its run dir)")
    return checkpoint_of(cfg.ckpt_path, "ckpt_path")


def dataset_config(cfg, hp: dict, ckpt_path: Path):
    """(dataset config, data dir): dataset=... from the command line, else the checkpoint's own."""
    if cfg.get("dataset") is not None:
        dataset_cfg, data_dir = OmegaConf.to_container(cfg.dataset, resolve=True), cfg.paths.data_dir
    else:
        saved = hp.get("config") or {}
        if "dataset" not in saved:
            raise CheckpointError(f"{ckpt_path} holds no training config to find its test set: pass "
                                  f"dataset=NAME (and dataset.root=PATH for imagefolder)")
        dataset_cfg = dict(saved["dataset"])
        data_dir = (saved.get("paths") or {}).get("data_dir") or cfg.paths.data_dir
    # The net saw images of one size; a dataset config's default size would score it on something else.
    if "image_size" in dataset_cfg and dataset_cfg["image_size"] != hp["image_size"]:
        log.info(f"dataset.image_size={dataset_cfg['image_size']} replaced by {hp['image_size']}, the size "
                 f"{ckpt_path.name} was trained at")
        dataset_cfg["image_size"] = hp["image_size"]
    return OmegaConf.create(dataset_cfg), data_dir


# The class counts of the datasets lab downloads: a checkpoint with another count is refused before a download.
DOWNLOADED_CLASSES = {"cifar10": 10, "cifar100": 100, "gtsrb": 43, "fashion_mnist": 10}


def check_class_count(dataset_cfg, hp: dict, ckpt_path: Path) -> None:
    known, trained = DOWNLOADED_CLASSES.get(dataset_cfg.get("name")), len(hp["class_names"])
    if known is not None and known != trained:
        raise DataError(f"dataset={dataset_cfg.name} has {known} classes but {ckpt_path} was trained on {trained}: "
                        f"evaluate on the dataset it was trained on")


def check_test_tta(test_tta: str, hp: dict, ckpt_path: Path) -> None:
    """test_tta=flip only for a net that trained on mirrored images (lab.config refuses it for training alike)."""
    if test_tta not in TTA_MODES:
        raise ConfigError(f"test_tta={test_tta!r} is not allowed: must be one of {', '.join(TTA_MODES)}")
    trained_with = (todays_config(hp.get("config")) or {}).get("augment") or {}
    if test_tta == "flip" and trained_with.get("flip") is not True:
        raise ConfigError(f"test_tta=flip is refused: {ckpt_path} was trained without random flips (augment.flip="
                          f"{trained_with.get('flip')}), so a mirror is not an image it knows (or its classes change "
                          f"under a mirror): set test_tta=none")


def predict_logits(net, data, hp: dict, batch_size: int, device, test_tta: str = "none"):
    """Logits of every test image, in test-set order, on the CPU (test_tta=flip: averaged with its mirror's)."""

    from lab.dataset.loader import DeviceLoader

    loader = DeviceLoader(data.test_images.to(device), data.test_labels.to(device), batch_size, hp["mean"],
                          hp["std"], shuffle=False, drop_last=False, channels_last=False)
    forward = (lambda images: flip_averaged(net, images)) if test_tta == "flip" else net
    with torch.inference_mode():
        return torch.cat([forward(images).float().cpu() for images, _ in loader])


def scores(logits, labels, class_names: list) -> tuple[dict, torch.Tensor]:
    """eval.json's numbers and the confusion matrix [true, predicted] as counts."""

    k = len(class_names)
    top = logits.topk(min(5, k), dim=1).indices
    confusion = torch.bincount(labels * k + top[:, 0], minlength=k * k).view(k, k)
    support = confusion.sum(1).tolist()
    per_class = {name: round(confusion[i, i].item() / n, 4) if n else None
                 for i, (name, n) in enumerate(zip(class_names, support))}
    return dict(test_acc=(top[:, 0] == labels).float().mean().item(),
                test_acc_top5=(top == labels[:, None]).any(1).float().mean().item(), test_images=len(labels),
                per_class_acc=per_class, per_class_images=dict(zip(class_names, support))), confusion


def print_table(result: dict) -> None:
    width = max(len("class"), *(len(name) for name in result["per_class_acc"]))
    print(f"{'class':<{width}}  {'images':>6}  {'acc':>6}")
    for name, acc in result["per_class_acc"].items():
        shown = "-" if acc is None else f"{acc:.4f}"
        print(f"{name:<{width}}  {result['per_class_images'][name]:>6}  {shown:>6}")
    print(f"test_acc {result['test_acc']:.4f} {interval(result)}  top-5 {result['test_acc_top5']:.4f}  "
          f"({result['test_images']} images)")


def interval(result: dict) -> str:
    """'[0.943, 0.981] (95%)': where another test sample of the same size could put the accuracy."""
    low, high = wilson_interval(result["test_acc"], result["test_images"])
    return f"[{low:.3f}, {high:.3f}] (95%)"


def run_name(ckpt_path: Path) -> str:
    """RUN/checkpoints/best.ckpt -> 'RUN best.ckpt' (the run's dir name says which run; a lone file, its name)."""
    if ckpt_path.parent.name == "checkpoints":
        return f"{ckpt_path.parent.parent.name} {ckpt_path.name}"
    return ckpt_path.name


def plot_confusion(confusion, class_names: list, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(class_names)
    # Rows as fractions of the true class, so a rare class's errors show as clearly as a common one's.
    rates = (confusion.double() / confusion.sum(1, keepdim=True).clamp_min(1)).numpy()
    side_in = max(6.0, 0.28 * k + 3)  # ~20 pt per class: 100 names stay readable at 6 pt
    font = min(10.0, max(6.0, 400 / k))
    names = [n if len(n) <= 30 else n[:29] + "..." for n in class_names]
    fig, ax = plt.subplots(figsize=(side_in, side_in))
    shown = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), names, rotation=90, fontsize=font)
    ax.set_yticks(range(k), names, fontsize=font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if k <= 20:  # counts in the cells while they fit
        for (row, col), count in zip(((r, c) for r in range(k) for c in range(k)), confusion.flatten().tolist()):
            if count:
                ax.text(col, row, count, ha="center", va="center", fontsize=font,
                        color="white" if rates[row, col] > 0.5 else "black")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02, label="fraction of the true class")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def score_checkpoint(cfg: DictConfig, ctx) -> dict:

    from lab.checkpoint import check_matches_data, load_checkpoint, net_from_checkpoint
    from lab.dataset import load_dataset

    out_dir = ctx.run_dir
    ckpt_path = checkpoint_path(cfg, "lab.eval")
    net, hp = net_from_checkpoint(load_checkpoint(ckpt_path), ckpt_path)
    test_tta = cfg.get("test_tta") or "none"
    check_test_tta(test_tta, hp, ckpt_path)
    dataset_cfg, data_dir = dataset_config(cfg, hp, ckpt_path)
    check_class_count(dataset_cfg, hp, ckpt_path)
    data = load_dataset(dataset_cfg, data_dir)
    check_matches_data(hp, data, ckpt_path, "evaluate on the dataset it was trained on")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    logits = predict_logits(net.to(device), data, hp, cfg.batch_size, device, test_tta)
    result, confusion = scores(logits, data.test_labels.cpu(), list(hp["class_names"]))
    # Lightning's name for it, as results.json's precision says how lab.train tested (bf16-mixed can differ).
    result = dict(result, ckpt_path=str(ckpt_path), dataset=dataset_cfg.name, device=str(device),
                  precision="32-true", test_tta=test_tta)
    print_table(result)
    write_json(out_dir / "eval.json", result)
    plot_confusion(confusion, list(hp["class_names"]), out_dir / "confusion_matrix.png",
                   f"{run_name(ckpt_path)} on {dataset_cfg.name} test: accuracy {result['test_acc']:.4f} "
                   f"{interval(result)}, {result['test_images']} images")
    log.info(f"wrote eval.json and confusion_matrix.png to {out_dir}")
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    run_or_exit(score_checkpoint, cfg, run_context(), records_run=False)


if __name__ == "__main__":
    main()
