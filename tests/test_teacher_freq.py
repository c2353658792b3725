"""A teacher trained with another time-feature frequency is refused like another horizon."""

import pytest

from timedistill_jax.configs import get_config
from timedistill_jax.errors import ConfigError
from timedistill_jax.run import run


def test_teacher_with_another_freq_is_refused(tmp_path):
  teacher = get_config("teacher", "dataset=synthetic,model=itransformer,smoke=True")
  teacher.train.progress = False
  run(teacher, tmp_path / "teacher")  # freq=h: 4 time features
  config = get_config("distill", "dataset=synthetic,teacher=itransformer,smoke=True")
  config.teacher.workdir = str(tmp_path / "teacher")
  config.data.freq = "t"  # 5 time features
  with pytest.raises(ConfigError, match=r"time-feature frequency \(set --config.data.freq\) "
                                        r"'h' \(this run: 't'\)"):
    run(config, tmp_path / "student")
  assert not (tmp_path / "student").exists()
