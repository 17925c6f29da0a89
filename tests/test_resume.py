from lab.resume import differences


def test_differences_skip_what_a_resume_may_change_and_name_the_rest():
    trained = {"seed": 1, "resume": False, "trainer": {"max_epochs": 4}, "paths": {"data_dir": "/a"},
               "scheduler": {"T_max": 4, "milestones": [2, 3]}, "optimizer": {"lr": 0.1}}
    now = {"seed": 1, "resume": True, "trainer": {"max_epochs": 8}, "paths": {"data_dir": "/b"},
           "scheduler": {"T_max": 8, "milestones": [2, 3]}, "optimizer": {"lr": 0.1, "nesterov": True}}
    # A longer run is allowed; the cosine horizon that follows from it is not (the checkpoint's scheduler keeps
    # the old T_max, so the lr would rise again after it).
    assert differences(trained, now) == ["optimizer.nesterov: unset -> True", "scheduler.T_max: 4 -> 8"]
