"""The Celery configuration, read from `worker.settings` when the app is first configured
(`app.config_from_object("worker.celeryconfig")` is lazy), never at import of the app.

Reliability first: JSON only, explicit queues, late acks with redelivery of a dead
worker's messages, soft and hard time limits below the broker's visibility timeout.
"""

from kombu import Exchange, Queue

from beat.schedule import beat_schedule as _beat_schedule
from worker.broker import QUEUES
from worker.redis_target import RedisTarget, celery_settings
from worker.settings import get_settings

_settings = get_settings()
_transport = {
    "visibility_timeout": _settings.visibility_timeout,
    # Every live worker sweeps for a dead worker's unacked messages every 5 s (kombu's
    # default: every 10th 10 s tick, ~100 s), and once when it starts; the sweep's mutex
    # outlives a worker killed in it only briefly.
    "unacked_restore_interval": 5,
    "unacked_restore_throttle": 1,
    "unacked_mutex_expire": 30,
}

if _settings.redis_key_prefix != "sf":
    # A second fleet on the same Redis: its queues and results apart from the first's.
    _transport["global_keyprefix"] = f"{_settings.redis_key_prefix}:celery:"

# The broker and the result backend: the same Redis as the fleet's own client (a plain
# one, or the master Redis Sentinel names, with TLS and passwords: worker/redis_target.py).
_redis = celery_settings(RedisTarget.from_settings(_settings), _transport)
broker_url = _redis["broker_url"]
result_backend = _redis["result_backend"]
broker_transport_options = _redis["broker_transport_options"]
result_backend_transport_options = _redis["result_backend_transport_options"]
broker_use_ssl = _redis["broker_use_ssl"]
redis_backend_use_ssl = _redis["redis_backend_use_ssl"]
redis_socket_timeout = _redis["redis_socket_timeout"]
redis_socket_connect_timeout = _redis["redis_socket_connect_timeout"]
broker_connection_retry_on_startup = True
# JSON only: nothing pickled crosses Redis.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
# Explicit queues: a typo in a route fails loudly instead of creating a queue.
task_queues = [Queue(name, Exchange(name), routing_key=name) for name in QUEUES]
task_default_queue = "default"
task_create_missing_queues = False
task_routes = {"gis.*": {"queue": "gis"}, "segment.*": {"queue": "segment"}}
# A task is acknowledged when it is done, so a killed worker's work is redone.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_soft_time_limit = _settings.task_soft_time_limit
task_time_limit = _settings.task_time_limit
# What a task leaves behind lives only as long as something reads it: results are not
# stored unless a task says so (`ignore_result=False`: what the CLI, `celery call` users
# or a chord's body read), and those expire after RESULT_EXPIRES; their readers forget
# them sooner (the CLI once it has the answer, gis.part_done its header's). So Redis holds
# no trace of the scans beyond their run summaries (tests/gis/test_flat_redis.py).
task_ignore_result = True
result_expires = _settings.result_expires
# A chord's own counters and gathered results: deleted when its body is sent; a chord
# whose header never completes (a lost message: the run engine redoes its part) leaves
# them for a day, whatever RESULT_EXPIRES says (a header part may wait an hour parked).
result_chord_expires = 86400
# Results hold return values only: extended results would keep every task's arguments
# (whole GIS records) in Redis until result_expires.
result_extended = False
task_track_started = True
# Flower shows tasks from these events.
worker_send_task_events = True
task_send_sent_event = True
timezone = "UTC"
enable_utc = True
# Logging is the app's own (worker/logs.py, set up through Celery's setup_logging signal):
# LOG_LEVEL and LOG_FORMAT decide, Celery's worker_log_format, worker_task_log_format and
# worker_hijack_root_logger do not apply. What the worker and beat print after start-up
# becomes records of celery.redirected at this level (worker/log_hooks.py reads both).
worker_redirect_stdouts = True
worker_redirect_stdouts_level = "WARNING"
beat_schedule = _beat_schedule(_settings.gis_scan_interval)
