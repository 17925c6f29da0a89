from lab.resume import differences


def test_differences_skip_what_a_resume_may_change_and_name_the_rest():
    trained = {"seed": 1, "resume": False, "trainer": {"max_epochs": 4}, "paths": {"data_dir": "/a"},
               "scheduler": {"T_max": 4, "milestones": [2, 3]}, "optimizer": {"lr": 0.1}}
    now = {"seed": 1, "resume": True, "trainer": {"max_epochs": 8}, "paths": {"data_dir": "/b"},
           "scheduler": {"T_max": 8, "milestones": [2, 3]}, "optimizer": {"lr": 0.1, "nesterov": True}}
    # A longer run is allowed; the cosine horizon that follows from it is not (the checkpoint's scheduler keeps
    # the old T_max, so the lr would rise again after it).
    assert differences(trained, now) == ["optimizer.nesterov: unset -> True", "scheduler.T_max: 4 -> 8"]


def test_sigterm_saves_last_ckpt_in_training_batches_only(tmp_path):
    from types import SimpleNamespace

    from pytorch_lightning.trainer.states import TrainerFn
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from lab.recorder import EpochRecorder

    saved = []
    # Testing: the module may hold best.ckpt's weights. Validating: a resume would skip the rest of it.
    for fn, validating in ((TrainerFn.TESTING, False), (TrainerFn.FITTING, True), (TrainerFn.FITTING, False)):
        trainer = SimpleNamespace(state=SimpleNamespace(fn=fn), sanity_checking=False, validating=validating,
                                  is_global_zero=True, current_epoch=2, global_step=7,
                                  save_checkpoint=lambda path: (saved.append(fn), open(path, "w").close()))
        EpochRecorder(tmp_path).on_exception(trainer, None, SIGTERMException())
    assert saved == [TrainerFn.FITTING] and (tmp_path / "checkpoints" / "last.ckpt").exists()


def test_a_failure_or_a_stop_never_replaces_a_finished_runs_results(tmp_path):
    # resume=true on a finished run from another machine (trainer=gpu without one) or a Ctrl-C while it
    # reports: nothing was trained, so the results must stay.
    import pytest
    from omegaconf import open_dict

    from lab.context import RunContext
    from lab.errors import ConfigError
    from lab.outcome import fail, stopped
    from lab.run_files import read_results, write_json
    from tests.conftest import compose

    ctx = RunContext(run_dir=tmp_path)
    cfg = compose(["~logger"])  # its save_dir names Hydra's run dir, which only a Hydra run has
    with open_dict(cfg):
        del cfg["hydra"]  # lab.train's main gets the config without Hydra's own node
    write_json(tmp_path / "results.json", {"status": "ok", "test_acc": 0.9})
    assert "no CUDA GPU" in fail(cfg, ctx, ConfigError("trainer.accelerator=gpu but ... no CUDA GPU"))
    with pytest.raises(SystemExit):
        stopped(cfg, ctx, "Ctrl-C")
    assert read_results(tmp_path) == {"status": "ok", "test_acc": 0.9}
    write_json(tmp_path / "results.json", {"status": "interrupted", "test_acc": None})
    fail(cfg, ctx, ConfigError("bad"))
    assert read_results(tmp_path)["status"] == "failed"  # an unfinished run is marked, so a sweep names it
