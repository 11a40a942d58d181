"""Write pacing: a rate bound, a pause every writer honours, retries only of what may pass later."""

from __future__ import annotations

import pytest

from webhook.cluster.api_calls import ApiRejected, ApiUnreachable
from webhook.cluster.write_pacing import PacingSettings, WriteRate, paced


class FakeTime:
    """A clock that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def rate(per_second: float, time: FakeTime) -> WriteRate:
    return WriteRate(per_second, clock=time.clock, sleep=time.sleep)


class TestWriteRate:
    def test_a_burst_then_the_steady_rate(self) -> None:
        time = FakeTime()
        bucket = rate(50, time)  # burst of 5
        for _ in range(5):
            bucket.acquire()
        assert time.now == 100.0
        for _ in range(50):
            bucket.acquire()
        assert time.now - 100.0 == pytest.approx(1.0)

    def test_a_rate_below_one_per_second_still_allows_one_write(self) -> None:
        time = FakeTime()
        bucket = rate(0.5, time)
        bucket.acquire()
        bucket.acquire()
        assert time.now - 100.0 == pytest.approx(2.0)

    def test_a_pause_holds_every_writer_back(self) -> None:
        time = FakeTime()
        bucket = rate(1000, time)
        bucket.hold_off(3.0)
        bucket.acquire()
        assert time.now >= 103.0
        assert bucket.waited_s >= 3.0

    def test_a_shorter_pause_does_not_shorten_a_longer_one(self) -> None:
        time = FakeTime()
        bucket = rate(1000, time)
        bucket.hold_off(3.0)
        bucket.hold_off(1.0)
        bucket.acquire()
        assert time.now >= 103.0


def flaky(*failures: Exception) -> tuple[list[int], object]:
    calls: list[int] = []
    pending = list(failures)

    def operation() -> str:
        calls.append(1)
        if pending:
            raise pending.pop(0)
        return "written"

    return calls, operation


class TestPaced:
    settings = PacingSettings(writes_per_second=1000, attempts=4, first_backoff_s=0.5)

    def run(self, operation: object, time: FakeTime, bucket: WriteRate | None = None) -> object:
        bucket = bucket or rate(1000, time)
        return paced(operation, bucket, self.settings, sleep=time.sleep)  # type: ignore[arg-type]

    def test_a_429_waits_what_retry_after_says_for_everyone(self) -> None:
        time = FakeTime()
        bucket = rate(1000, time)
        calls, operation = flaky(ApiRejected(429, "TooManyRequests", "slow down", 2.0))
        assert self.run(operation, time, bucket) == "written"
        assert len(calls) == 2
        assert time.now - 100.0 == pytest.approx(2.0, abs=0.01)
        assert bucket.waited_s >= 2.0  # the pause was the bucket's: other writers wait too

    def test_server_errors_back_off_exponentially(self) -> None:
        time = FakeTime()
        calls, operation = flaky(
            ApiRejected(500, "InternalError", ""),
            ApiRejected(503, "ServiceUnavailable", ""),
            ApiUnreachable("the Kubernetes API did not answer in time"),
        )
        assert self.run(operation, time) == "written"
        assert len(calls) == 4
        assert [round(s, 2) for s in time.slept if s >= 0.1] == [0.5, 1.0, 2.0]

    def test_a_retry_after_on_a_503_is_honoured_too(self) -> None:
        time = FakeTime()
        calls, operation = flaky(ApiRejected(503, "ServiceUnavailable", "", 7.0))
        self.run(operation, time)
        assert 7.0 in time.slept
        assert len(calls) == 2

    def test_a_retry_after_beyond_the_cap_is_cut(self) -> None:
        time = FakeTime()
        _, operation = flaky(ApiRejected(429, "TooManyRequests", "", 3600.0))
        self.run(operation, time)
        assert time.now - 100.0 == pytest.approx(self.settings.max_backoff_s, abs=0.01)

    @pytest.mark.parametrize(
        ("status", "reason"),
        [(400, "BadRequest"), (403, "Forbidden"), (409, "Conflict"), (422, "Invalid"), (501, "")],
    )
    def test_what_will_not_change_is_not_tried_again(self, status: int, reason: str) -> None:
        time = FakeTime()
        calls, operation = flaky(ApiRejected(status, reason, ""))
        with pytest.raises(ApiRejected):
            self.run(operation, time)
        assert len(calls) == 1

    def test_the_last_failure_is_raised_after_the_attempts(self) -> None:
        time = FakeTime()
        failures = [ApiRejected(503, "ServiceUnavailable", str(n)) for n in range(4)]
        calls, operation = flaky(*failures)
        with pytest.raises(ApiRejected, match="3"):
            self.run(operation, time)
        assert len(calls) == 4

    def test_unreachable_after_the_attempts_is_raised(self) -> None:
        time = FakeTime()
        calls, operation = flaky(*(ApiUnreachable("down") for _ in range(4)))
        with pytest.raises(ApiUnreachable):
            self.run(operation, time)
        assert len(calls) == 4


@pytest.mark.parametrize(
    "settings",
    [
        {"writes_per_second": 0},
        {"in_flight": 0},
        {"attempts": 0},
    ],
)
def test_settings_that_would_never_write_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        PacingSettings(**settings)  # type: ignore[arg-type]
