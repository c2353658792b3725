"""Calendar features of the timestamps (Time-Series-Library's ``embed='timeF'`` encoding).

Each feature is a calendar field mapped linearly onto [-0.5, 0.5], with the same divisors as
TSLib's ``utils/timefeatures.py`` (which comes from GluonTS), so that teachers trained here see
exactly the marks the reference teachers saw. Which fields are used depends only on the frequency
string; the reference passes no ``--freq``, so every benchmark dataset uses ``'h'`` (F = 4), also
the 15- and 10-minute ones.
"""

import re
from typing import Callable

import numpy as np
import pandas as pd

from timedistill_jax.errors import ConfigError

_Feature = Callable[[pd.DatetimeIndex], np.ndarray]


def _second_of_minute(d: pd.DatetimeIndex) -> np.ndarray:
  return np.asarray(d.second, np.float64) / 59.0 - 0.5


def _minute_of_hour(d: pd.DatetimeIndex) -> np.ndarray:
  return np.asarray(d.minute, np.float64) / 59.0 - 0.5


def _hour_of_day(d: pd.DatetimeIndex) -> np.ndarray:
  return np.asarray(d.hour, np.float64) / 23.0 - 0.5


def _day_of_week(d: pd.DatetimeIndex) -> np.ndarray:
  return np.asarray(d.dayofweek, np.float64) / 6.0 - 0.5


def _day_of_month(d: pd.DatetimeIndex) -> np.ndarray:
  return (np.asarray(d.day, np.float64) - 1.0) / 30.0 - 0.5


def _day_of_year(d: pd.DatetimeIndex) -> np.ndarray:
  return (np.asarray(d.dayofyear, np.float64) - 1.0) / 365.0 - 0.5


def _month_of_year(d: pd.DatetimeIndex) -> np.ndarray:
  return (np.asarray(d.month, np.float64) - 1.0) / 11.0 - 0.5


def _week_of_year(d: pd.DatetimeIndex) -> np.ndarray:
  # ISO week (1..53), as TSLib's ``index.isocalendar().week``.
  week = d.isocalendar().week.to_numpy(dtype=np.float64)
  return (week - 1.0) / 52.0 - 0.5


_HOURLY = (_hour_of_day, _day_of_week, _day_of_month, _day_of_year)
_MINUTELY = (_minute_of_hour,) + _HOURLY
_DAILY = (_day_of_week, _day_of_month, _day_of_year)

# Frequency alias -> features, in TSLib's order. TSLib resolves the string with pandas'
# ``to_offset``; the aliases below are the ones its ``--freq`` help lists, plus the yearly and
# quarterly offsets its table also maps.
FEATURES_BY_FREQ: dict[str, tuple[_Feature, ...]] = {
    "y": (),
    "a": (),
    "q": (_month_of_year,),
    "m": (_month_of_year,),
    "w": (_day_of_month, _week_of_year),
    "d": _DAILY,
    "b": _DAILY,
    "h": _HOURLY,
    "t": _MINUTELY,
    "min": _MINUTELY,
    "s": (_second_of_minute,) + _MINUTELY,
}


# Name and formula of each feature, written into exported models' metadata so that a server
# without pandas can build the marks (``timedistill_jax.serving.time_features`` reads the names).
DESCRIPTIONS: dict[_Feature, tuple[str, str]] = {
    _second_of_minute: ("second_of_minute", "second / 59 - 0.5"),
    _minute_of_hour: ("minute_of_hour", "minute / 59 - 0.5"),
    _hour_of_day: ("hour_of_day", "hour / 23 - 0.5"),
    _day_of_week: ("day_of_week", "weekday / 6 - 0.5, Monday = 0"),
    _day_of_month: ("day_of_month", "(day of month - 1) / 30 - 0.5"),
    _day_of_year: ("day_of_year", "(day of year - 1) / 365 - 0.5"),
    _month_of_year: ("month_of_year", "(month - 1) / 11 - 0.5"),
    _week_of_year: ("week_of_year", "(ISO week - 1) / 52 - 0.5"),
}


def _features_for(freq: str) -> tuple[_Feature, ...]:
  """Features of ``freq``; a multiple such as ``'15min'`` or ``'1H'`` counts as its unit."""
  match = re.fullmatch(r"\s*\d*\s*([A-Za-z]+)\s*", freq) if isinstance(freq, str) else None
  unit = match.group(1).lower() if match else None
  if unit not in FEATURES_BY_FREQ:
    raise ConfigError(
        f"unknown time-feature frequency {freq!r}; valid choices: "
        f"{', '.join(FEATURES_BY_FREQ)} (optionally with a multiple, e.g. '15min'). "
        "The reference uses 'h' for every dataset.")
  return FEATURES_BY_FREQ[unit]


def describe(freq: str = "h") -> list:
  """``[{"name", "formula"}]`` of the features of ``freq``, in column order."""
  return [dict(zip(("name", "formula"), DESCRIPTIONS[f])) for f in _features_for(freq)]


def num_time_features(freq: str = "h") -> int:
  """F, the number of calendar features ``time_features`` gives for ``freq``."""
  return len(_features_for(freq))


def time_features(dates, freq: str = "h") -> np.ndarray:
  """Calendar features of ``dates``: float32 ``[T, F]``, each column in [-0.5, 0.5].

  Computed in float64 and cast once, as the reference's float64 marks become float32 when they
  enter the model.
  """
  features = _features_for(freq)
  dates = pd.DatetimeIndex(dates)
  if not features:
    return np.zeros((len(dates), 0), np.float32)
  return np.stack([f(dates) for f in features], axis=1).astype(np.float32)  # [T, F]
