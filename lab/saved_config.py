"""Configs that an earlier lab saved (results.json, a checkpoint's hyper_parameters), read as today's: a run from
before a change of layout still resumes, evaluates, predicts and teaches. A leaf: it imports nothing of lab's.

The changes, oldest first:
- models by `_target_`: a model node without one was a lab ResNet (name, block, layers, ...);
- augment as its own group: dataset.augment.{crop_padding, flip} became dataset.{crop_padding, flip} (the defaults)
  and augment.*; erasing, mixing, EMA and test-time flips did not exist, so they were off."""
import copy

RESNET_BUILDER = "lab.model.resnet.resnet"
OFF_BEFORE_AUGMENT_GROUP = {"erase_p": 0.0, "mix": "none", "mix_alpha": 1.0, "mix_p": 1.0}


def todays_model(model: dict) -> dict:
    """A model node with its `_target_`."""
    if "_target_" in model or "block" not in model:
        return dict(model)
    return {"_target_": RESNET_BUILDER, **{k: v for k, v in model.items() if k != "name"}}


def todays_config(config: dict | None) -> dict | None:
    """A whole run config (resolved, plain) in today's layout; a config already in it is returned unchanged."""
    if not config:
        return config
    config = copy.deepcopy(config)
    if isinstance(config.get("model"), dict):
        config["model"] = todays_model(config["model"])
    dataset = config.get("dataset")
    if isinstance(dataset, dict) and isinstance(dataset.get("augment"), dict) and "augment" not in config:
        old = dataset.pop("augment")
        dataset.update(crop_padding=old.get("crop_padding", 0), flip=old.get("flip", False))
        config["augment"] = dict(crop_padding=dataset["crop_padding"], flip=dataset["flip"], **OFF_BEFORE_AUGMENT_GROUP)
        config.setdefault("ema", {"decay": None, "warmup": True})
        config.setdefault("test_tta", "none")
    return config
