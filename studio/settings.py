"""Studio settings, read from the environment (see .env.default for every variable).

Two run modes, chosen by ``REDIS_URL``:

* unset, the embedded default: SQLite under ``STUDIO_DATA_DIR``, the in-process channel
  layer, Celery tasks run on background threads of the web process;
* set: Celery broker and Channels layer on Redis, PostgreSQL from ``DATABASE_URL`` when
  given, workers as separate ``celery worker`` processes on queues ``default`` and ``gpu``.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from studio.env import Env, database_from_url, sqlite_database

BASE_DIR = Path(__file__).resolve().parent.parent
env = Env.load(BASE_DIR)

STUDIO_VERSION = "0.1.0"

DATA_DIR = Path(env.str("STUDIO_DATA_DIR", str(BASE_DIR / "var"))).resolve()
# The data directory holds the SQLite database (API tokens, sessions) and the secret key:
# only the studio's own user may read it.
DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)


def _secret_key() -> str:
    """The configured key, or one generated once and kept in the data directory."""
    configured = env.raw("DJANGO_SECRET_KEY")
    if configured:
        return configured
    key_file = DATA_DIR / "secret_key"
    if key_file.exists():
        os.chmod(key_file, 0o600)
    try:  # exclusive create: processes starting together (web, workers) agree on one key
        fd = os.open(key_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        for _ in range(100):  # the creator may not have written it yet
            if key := key_file.read_text().strip():
                return key
            time.sleep(0.02)
        raise ImproperlyConfigured(f"{key_file} is empty: delete it or set DJANGO_SECRET_KEY") from None
    key = secrets.token_urlsafe(50)
    with os.fdopen(fd, "w") as out:
        out.write(key)
    return key


def _private(path: Path) -> None:
    """Only the studio's own user may read ``path`` (created empty if missing)."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chmod(path, 0o600)


SECRET_KEY = _secret_key()
DEBUG = env.bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# --- the public address, TLS ------------------------------------------------------------
# Where users (and provider webhooks) reach the studio, e.g. https://studio.example.com.
STUDIO_PUBLIC_URL = env.url("STUDIO_PUBLIC_URL", None, schemes=("http", "https"))
if STUDIO_PUBLIC_URL:
    _public = urlsplit(STUDIO_PUBLIC_URL)
    if _public.hostname not in ALLOWED_HOSTS and "*" not in ALLOWED_HOSTS:
        ALLOWED_HOSTS.append(_public.hostname)
    _origin = f"{_public.scheme}://{_public.netloc}"
    if _origin not in CSRF_TRUSTED_ORIGINS:
        CSRF_TRUSTED_ORIGINS.append(_origin)


def _networks(name: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A comma-separated list of addresses or networks (``10.0.0.0/8,::1``)."""
    try:
        return tuple(ipaddress.ip_network(item, strict=False) for item in env.list(name, []))
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must list IP addresses or networks like 10.0.0.0/8: {exc}") from None


# Reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed, by the address
# they connect from (studio.middleware.TrustedProxyMiddleware); empty: none.
STUDIO_TRUSTED_PROXIES = _networks("STUDIO_TRUSTED_PROXIES")
STUDIO_HTTPS = bool(STUDIO_PUBLIC_URL and STUDIO_PUBLIC_URL.startswith("https://"))
if STUDIO_HTTPS:
    # Behind a TLS-terminating proxy (the only way a public https URL reaches daphne):
    # cookies travel over TLS only, browsers are told to keep using https.
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("STUDIO_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = False
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- run mode -------------------------------------------------------------------------
REDIS_URL = env.url("REDIS_URL", None, schemes=("redis", "rediss", "unix"))
STUDIO_EMBEDDED = REDIS_URL is None
STUDIO_MODE = "embedded" if STUDIO_EMBEDDED else "services"
STUDIO_EMBEDDED_WORKERS = env.int("STUDIO_EMBEDDED_WORKERS", 2, minimum=1, maximum=64)
# Threads of a web process that run requests' synchronous code (views, the database), kept for
# the process's life; more requests at once wait for a free one (runtime/wsgi_threads.py).
STUDIO_WEB_THREADS = env.int("STUDIO_WEB_THREADS", 32, minimum=1, maximum=1024)
STUDIO_HOST = env.str("STUDIO_HOST", "127.0.0.1")
STUDIO_PORT = env.int("STUDIO_PORT", 8000, minimum=1, maximum=65535)
STUDIO_REQUIRE_GPU = env.bool("STUDIO_REQUIRE_GPU", False)
HEALTH_TIMEOUT = env.float("HEALTH_TIMEOUT", 2.0, minimum=0.1, maximum=30)
# Seconds between two census heartbeats of a Celery worker (runtime.workers); a worker not
# heard from for three is counted as gone.
STUDIO_WORKER_HEARTBEAT_S = env.float("STUDIO_WORKER_HEARTBEAT_S", 5.0, minimum=0.2, maximum=300)
# Every Redis key of this studio (Celery queues, Channels groups, the cache with its
# throttle counters) starts with this, so two studios (or two test runs) can share a Redis.
REDIS_KEY_PREFIX = env.str("REDIS_KEY_PREFIX", "studio")

# --- apps -----------------------------------------------------------------------------
INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "axes",
    "studio",
    "model_control",
    "videogen",
]

MIDDLEWARE = [
    "studio.middleware.RedactErrorRepliesMiddleware",
    # Outside everything that can fail with an HTML error page, so the API's become JSON.
    "studio.middleware.JsonApiErrorsMiddleware",
    # Before anything reads the client's address or scheme (security, axes, throttles).
    "studio.middleware.TrustedProxyMiddleware",
    "studio.middleware.UnstorableTextMiddleware",
    "studio.middleware.GenerationCountMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "studio.middleware.PagesRequireLoginMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "studio.urls"
ASGI_APPLICATION = "studio.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "studio.context_processors.navigation",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------
_database_url = env.raw("DATABASE_URL")
DATABASES = {
    "default": database_from_url("DATABASE_URL", _database_url,
                                 env.int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
                                 pool_size=env.int("DATABASE_POOL_SIZE", 8, minimum=0, maximum=1000),
                                 pool_timeout=env.float("DATABASE_POOL_TIMEOUT", 30.0, minimum=0.1, maximum=600),
                                 prepared=env.bool("DATABASE_PREPARED_STATEMENTS", True))
    if _database_url
    else sqlite_database(DATA_DIR / "studio.sqlite3")
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # It holds API tokens and sessions. SQLite gives its -wal and -shm files the database
    # file's mode, so creating the file 0600 before SQLite opens it covers all three.
    _sqlite = Path(DATABASES["default"]["NAME"])
    _sqlite.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    for _path in (_sqlite, *(p for p in (Path(f"{_sqlite}-wal"), Path(f"{_sqlite}-shm")) if p.exists())):
        _private(_path)

# --- channels -------------------------------------------------------------------------
if STUDIO_EMBEDDED:
    CHANNEL_LAYERS = {"default": {"BACKEND": "runtime.channel_layers.EmbeddedChannelLayer"}}
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 reads with a 5 s socket timeout by default, while channels_redis waits
            # in BZPOPMIN for up to 5 s: every socket quiet for 5 s died with a TimeoutError.
            # 10 s: above that wait, and still short for a connection that really hangs.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 10, "socket_connect_timeout": 5}],
                       "prefix": f"{REDIS_KEY_PREFIX}:channels"},
        }
    }

# --- cache: throttle counters, login failures, generation slots ---------------------------
# One Redis for every web process in the services mode, so limits hold across them.
if STUDIO_EMBEDDED:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "studio"}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"{REDIS_KEY_PREFIX}:cache",
            "OPTIONS": {"socket_connect_timeout": 5, "socket_timeout": 5},
        }
    }

# --- celery ---------------------------------------------------------------------------
# The broker carries only "look at job N"; the database row is the source of truth.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_DEFAULT_QUEUE = "default"
# GPU work is named "<app>.gpu.<task>" and goes to the gpu queue (one task per GPU at a time).
CELERY_TASK_ROUTES = {"*.gpu.*": {"queue": "gpu"}}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Outages (docs/deployment.md, "Faults"): a worker keeps reconnecting for as long as Redis is
# away (never exits after N tries), and a publish gives up within a couple of seconds (a
# request that dispatches while Redis is down answers anyway: the sweep sends it later).
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_BROKER_CHANNEL_ERROR_RETRY = True
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
# A task running when the connection drops runs to its end (a paid submit is never cut in the
# middle); its message, unacknowledged, is delivered again and finds the row's state.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Seconds a delivered, unacknowledged message stays invisible before Redis hands it out again
# (a worker died, or could not give it back while Redis was away). Our tasks are short (a
# provider call, a download: VIDEO_GENERATION_TIMEOUT at most), so 5 minutes, not Celery's hour.
# At least 60 s: a task retried after a transient error waits up to 30 s (runtime.celery).
STUDIO_BROKER_VISIBILITY_TIMEOUT_S = env.float("STUDIO_BROKER_VISIBILITY_TIMEOUT_S", 300.0, minimum=60, maximum=86400)
# The longest countdown a task is sent with; a longer wait is kept in the job's row and the
# sweep dispatches it when due (a message held longer could outlive the visibility timeout).
STUDIO_TASK_MAX_COUNTDOWN_S = min(60.0, STUDIO_BROKER_VISIBILITY_TIMEOUT_S / 5)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": STUDIO_BROKER_VISIBILITY_TIMEOUT_S,
    "global_keyprefix": f"{REDIS_KEY_PREFIX}:celery:",
    # Look for messages past their visibility timeout every few seconds (kombu: every 100 s).
    "unacked_restore_interval": max(1, int(STUDIO_BROKER_VISIBILITY_TIMEOUT_S / 30)),
    "unacked_restore_throttle": 1,
    # A dead peer (failover, a dropped NAT entry) is noticed instead of waited on forever.
    "socket_connect_timeout": 5,
    "socket_timeout": 10,
    "socket_keepalive": True,
    "health_check_interval": 10,
}
# Task threads (or processes) of a `celery worker` that does not say -c: each holds at most
# one database connection at a time, so they count against max_connections (docs/deployment.md).
CELERY_WORKER_CONCURRENCY = env.int("STUDIO_WORKER_CONCURRENCY", 4, minimum=1, maximum=256)
# celery beat's schedule state (only "when did each entry last run"), beside the data.
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fixup closes every database connection around every task unless this is
# set; runtime.celery instead hands unusable or old connections back before each task (with
# a pool, back to the pool), so a healthy one is reused.
CELERY_DB_REUSE_MAX = 1_000_000
# Periodic tasks: `celery beat` runs them in the services mode (runstudio --with-workers and
# compose start it), timers of the web process in the embedded mode (runtime.embedded).
STUDIO_JOB_SWEEP_S = env.float("STUDIO_JOB_SWEEP_S", 30.0, minimum=1, maximum=3600)
# A remote job whose row has not moved for this long (polls move it every few seconds) lost
# its task and is dispatched again; a pending one (it may wait for a submit slot) after the second.
STUDIO_JOB_LEASE_S = env.float("STUDIO_JOB_LEASE_S", 60.0, minimum=1, maximum=86400)
STUDIO_JOB_PENDING_LEASE_S = env.float("STUDIO_JOB_PENDING_LEASE_S", 120.0, minimum=1, maximum=86400)
CELERY_BEAT_SCHEDULE = {
    # A sweep not started within its period is dropped (workers busy, or away): the next one
    # does its work, and an outage does not leave a pile of sweeps to run at once.
    "sweep-jobs": {"task": "videogen.sweep_jobs", "schedule": STUDIO_JOB_SWEEP_S,
                   "options": {"expires": STUDIO_JOB_SWEEP_S}},
}

# --- auth -----------------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
STUDIO_ADMIN_USERNAME = env.str("STUDIO_ADMIN_USERNAME", "admin")
STUDIO_ADMIN_EMAIL = env.str("STUDIO_ADMIN_EMAIL", "")
STUDIO_ADMIN_PASSWORD = env.raw("STUDIO_ADMIN_PASSWORD")

# Login lockout (django-axes): after STUDIO_LOGIN_FAILURE_LIMIT wrong passwords for one
# user name from one address, that pair is refused (429) for STUDIO_LOGIN_LOCKOUT_MINUTES.
# Counted in the cache, so every web process shares the count in the services mode.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Redis in the services mode; the database in the embedded mode (one process, where axes
# does not trust the in-process cache).
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler" if STUDIO_EMBEDDED else "axes.handlers.cache.AxesCacheHandler"
AXES_FAILURE_LIMIT = env.int("STUDIO_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("STUDIO_LOGIN_LOCKOUT_MINUTES", 15, minimum=0.1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# The client's real address, as TrustedProxyMiddleware resolved it behind STUDIO_TRUSTED_PROXIES:
# behind a proxy, a lockout is per client, not per proxy.
AXES_CLIENT_IP_CALLABLE = "studio.middleware.request_client_address"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

# Per-user limits on what costs money (DRF throttles, "N/second|minute|hour|day"), and on
# how many generations one user may have unfinished at once.
STUDIO_THROTTLE_RATES = {
    "generation": env.rate("STUDIO_THROTTLE_GENERATION", "60/hour"),
    "fal_token": env.rate("STUDIO_THROTTLE_FAL_TOKEN", "60/hour"),
}
STUDIO_MAX_UNFINISHED_GENERATIONS = env.int("STUDIO_MAX_UNFINISHED_GENERATIONS", 4, minimum=1, maximum=100000)

# The most pixels (width x height) an uploaded image (or data: URL) may have; refused from
# its header, before any decoding (model_control/images.py); Pillow itself stops near 89 Mpx.
STUDIO_MAX_IMAGE_PIXELS = env.int("STUDIO_MAX_IMAGE_PIXELS", 40_000_000, minimum=1024, maximum=89_000_000)

REST_FRAMEWORK = {
    # Token first: an anonymous API call then gets 401 with a WWW-Authenticate header.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "runtime.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "studio.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Studio API",
    "DESCRIPTION": "Video generation on Tenstorrent, fal.ai and a local Krea realtime pipeline.",
    "VERSION": STUDIO_VERSION,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- CORS on the realtime token endpoints (django-cors-headers) ----------------------------
# Origins whose pages may mint realtime tokens from the browser (POST /fal/tokens/, /api/fal,
# /api/realtime/token), with an Authorization header; never with the studio's cookies.
STUDIO_CORS_ORIGINS = [origin.rstrip("/") for origin in env.list("STUDIO_CORS_ORIGINS", [])]
for _cors in STUDIO_CORS_ORIGINS:
    _cors_parts = urlsplit(_cors)
    if _cors_parts.scheme not in ("http", "https") or not _cors_parts.netloc or _cors_parts.path \
            or _cors_parts.query or _cors_parts.fragment:
        raise ImproperlyConfigured(f"STUDIO_CORS_ORIGINS must list origins like https://app.example.com "
                                   f"(scheme, host and port; no path), got {_cors!r}")
INSTALLED_APPS.append("corsheaders")
# Above CommonMiddleware, as django-cors-headers asks: a preflight is answered before anything else.
MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.common.CommonMiddleware"), "corsheaders.middleware.CorsMiddleware")
CORS_ALLOWED_ORIGINS = STUDIO_CORS_ORIGINS
CORS_URLS_REGEX = r"^/(fal/tokens|api/fal|api/realtime/token)/?$"
CORS_ALLOW_CREDENTIALS = False

# --- i18n, static, media ----------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("STUDIO_MEDIA_ROOT", str(DATA_DIR / "media"))).resolve()
MODELS_DIR = Path(env.str("STUDIO_MODELS_DIR", str(DATA_DIR / "models"))).resolve()

# Videos, thumbnails and uploads go through Django's storage API: MEDIA_ROOT by default, an
# S3-compatible bucket (django-storages) when STUDIO_S3_BUCKET is set, so web and workers on
# several hosts share them (docs/deployment.md).
STUDIO_S3_BUCKET = env.raw("STUDIO_S3_BUCKET")
STUDIO_S3_SECRET_KEY = env.raw("STUDIO_S3_SECRET_KEY")
if STUDIO_S3_BUCKET:
    STORAGES = {
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": STUDIO_S3_BUCKET,
                "endpoint_url": env.url("STUDIO_S3_ENDPOINT_URL", None, schemes=("http", "https")),
                "region_name": env.str("STUDIO_S3_REGION", "us-east-1"),
                "access_key": env.raw("STUDIO_S3_ACCESS_KEY"),
                "secret_key": STUDIO_S3_SECRET_KEY,
                "location": env.str("STUDIO_S3_PREFIX", ""),
                "file_overwrite": False,
                "default_acl": None,
                "querystring_auth": True,
            },
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }

# --- providers (names as docs/protocols.md gives them) -----------------------------------------
_HTTP = ("http", "https")
FAL_KEY = env.optional_str("FAL_KEY", "FAL_API_KEY")
FAL_QUEUE_URL = env.url("FAL_QUEUE_URL", "https://queue.fal.run", schemes=_HTTP)
FAL_RUN_URL = env.url("FAL_RUN_URL", "https://fal.run", schemes=_HTTP)
FAL_REST_URL = env.url("FAL_REST_URL", "https://rest.fal.ai", schemes=_HTTP)
FAL_REALTIME_URL = env.url("FAL_REALTIME_URL", "wss://fal.run", schemes=("ws", "wss"))
FAL_CDN_URL = env.url("FAL_CDN_URL", "https://v3.fal.media", schemes=_HTTP)
FAL_HTTP_TIMEOUT = env.float("FAL_HTTP_TIMEOUT", 120.0, minimum=1)
FAL_MAX_ATTEMPTS = env.int("FAL_MAX_ATTEMPTS", 10, minimum=1, maximum=20)
FAL_TOKEN_MAX_EXPIRATION = env.int("FAL_TOKEN_MAX_EXPIRATION", 3600, minimum=60)
# fal's webhook keys (empty: {FAL_REST_URL}/.well-known/jwks.json) and the clock skew allowed.
FAL_JWKS_URL = env.url("FAL_JWKS_URL", None, schemes=_HTTP)
FAL_WEBHOOK_MAX_SKEW = env.int("FAL_WEBHOOK_MAX_SKEW", 300, minimum=1, maximum=3600)
CLOUD_VIDEO_GENERATION_URL = env.url("CLOUD_VIDEO_GENERATION_URL", None, schemes=_HTTP)
CLOUD_VIDEO_GENERATION_AUTH_TOKEN = env.raw("CLOUD_VIDEO_GENERATION_AUTH_TOKEN")
VIDEO_GENERATION_TIMEOUT = env.float("VIDEO_GENERATION_TIMEOUT", 180.0, minimum=0.1)
VIDEO_POLL_INTERVAL = env.float("VIDEO_POLL_INTERVAL", 0.1, minimum=0.01, maximum=60)
# Seconds after a submit during which a job without a webhook is polled every VIDEO_POLL_INTERVAL.
JOB_DENSE_POLL_S = env.float("JOB_DENSE_POLL_S", 2.0, minimum=0, maximum=600)
# With STUDIO_PUBLIC_URL set the provider calls back when a job is done (a webhook): polls are
# then only a safety net, the first after this many seconds, backing off to 60 s.
JOB_WEBHOOK_POLL_INTERVAL = env.float("JOB_WEBHOOK_POLL_INTERVAL", 10.0, minimum=0.01, maximum=600)
# Per provider, across every worker process: paid submits in flight, and the status calls its
# poller (one per provider, videogen.poll_backend) makes at once.
JOB_SUBMIT_CONCURRENCY = env.int("JOB_SUBMIT_CONCURRENCY", 5, minimum=1, maximum=1000)
JOB_POLL_CONCURRENCY = env.int("JOB_POLL_CONCURRENCY", 20, minimum=1, maximum=1000)
# Seconds a provider slot is leased for; the holder renews it while it works, so the slots of
# a worker that dies free themselves within this.
JOB_SLOT_LEASE_S = env.float("JOB_SLOT_LEASE_S", 30.0, minimum=1, maximum=3600)
# First wait before fetching a finished job's video again after a failed download (doubles, at most 1 h).
JOB_DOWNLOAD_RETRY_S = env.float("JOB_DOWNLOAD_RETRY_S", 30.0, minimum=0.01, maximum=3600)

# --- the local Krea pipeline and realtime sessions (docs/realtime.md, docs/pipeline.md) -----
# Which pipeline a GPU worker (or the embedded web process) loads once and keeps warm:
# full (the Krea 14B weights in STUDIO_MODELS_DIR), tiny (random weights, CPU-sized) or auto.
STUDIO_PIPELINE = env.choice("STUDIO_PIPELINE", "auto", ("auto", "full", "tiny"))
STUDIO_PIPELINE_DEVICE = env.str("STUDIO_PIPELINE_DEVICE", "auto").strip().lower()
# Load it when a GPU worker starts (false: on its first session or job).
STUDIO_PIPELINE_PRELOAD = env.bool("STUDIO_PIPELINE_PRELOAD", True)
if STUDIO_PIPELINE_DEVICE not in ("auto", "cpu", "cuda") and not (
        STUDIO_PIPELINE_DEVICE.startswith("cuda:") and STUDIO_PIPELINE_DEVICE[5:].isdigit()):
    raise ImproperlyConfigured(f"STUDIO_PIPELINE_DEVICE must be auto, cpu, cuda or cuda:N, got {STUDIO_PIPELINE_DEVICE!r}")
# The upstream of /ws/realtime/ when the client does not say (?backend=local|fal).
STUDIO_REALTIME_BACKEND = env.choice("STUDIO_REALTIME_BACKEND", "local", ("local", "fal"))
# The most blocks one realtime session may ask for (num_blocks; a block is 12 frames).
STUDIO_REALTIME_MAX_BLOCKS = env.int("STUDIO_REALTIME_MAX_BLOCKS", 1000, minimum=1, maximum=100000)
# Blocks a session runs when its parameters do not say (num_blocks, 1-STUDIO_REALTIME_MAX_BLOCKS).
STUDIO_REALTIME_DEFAULT_BLOCKS = env.int("STUDIO_REALTIME_DEFAULT_BLOCKS", 10, minimum=1, maximum=100000)
if STUDIO_REALTIME_DEFAULT_BLOCKS > STUDIO_REALTIME_MAX_BLOCKS:
    raise ImproperlyConfigured(f"STUDIO_REALTIME_DEFAULT_BLOCKS ({STUDIO_REALTIME_DEFAULT_BLOCKS}) must be at most "
                               f"STUDIO_REALTIME_MAX_BLOCKS ({STUDIO_REALTIME_MAX_BLOCKS})")
# Seconds without a frame before a streaming session ends with an error.
STUDIO_REALTIME_FRAME_TIMEOUT = env.float("STUDIO_REALTIME_FRAME_TIMEOUT", 10.0, minimum=0.1, maximum=600)
# Seconds a realtime session may stream in all, whatever its num_blocks; then it ends (end_reason timeout).
STUDIO_REALTIME_SESSION_MAX_S = env.float("STUDIO_REALTIME_SESSION_MAX_S", 600.0, minimum=1, maximum=86400)
# Seconds a session may wait for a GPU worker before it ends with an error (end_reason timeout).
STUDIO_REALTIME_QUEUE_TIMEOUT_S = env.float("STUDIO_REALTIME_QUEUE_TIMEOUT_S", 300.0, minimum=1, maximum=86400)
# Seconds between two sweeps of realtime sessions: stale ones closed, a dead producer's recording saved.
STUDIO_REALTIME_SWEEP_S = env.float("STUDIO_REALTIME_SWEEP_S", 30.0, minimum=1, maximum=3600)
CELERY_BEAT_SCHEDULE["sweep-realtime-sessions"] = {
    "task": "videogen.sweep_realtime_sessions", "schedule": STUDIO_REALTIME_SWEEP_S,
    "options": {"expires": STUDIO_REALTIME_SWEEP_S},  # a sweep not run in its period is replaced by the next
}
# Frames kept per client when it reads slower than frames arrive; beyond it the oldest is dropped.
STUDIO_REALTIME_CLIENT_BUFFER = env.int("STUDIO_REALTIME_CLIENT_BUFFER", 24, minimum=1, maximum=1000)
# Bytes the kernel may hold unsent for one WebSocket (SO_SNDBUF; 0: the kernel's autotuning,
# up to 4 MiB): beyond it a slow client's frames wait where the studio can drop them.
STUDIO_REALTIME_SEND_BUFFER = env.int("STUDIO_REALTIME_SEND_BUFFER", 262144, minimum=0, maximum=2**26)
# Seconds between two {"status": "streaming", fps, frames, dropped} messages.
STUDIO_REALTIME_STATUS_INTERVAL = env.float("STUDIO_REALTIME_STATUS_INTERVAL", 1.0, minimum=0.05, maximum=60)
# Realtime sessions one user may have open at once (queued or streaming).
STUDIO_REALTIME_SESSIONS_PER_USER = env.int("STUDIO_REALTIME_SESSIONS_PER_USER", 2, minimum=1, maximum=1000)
# Sessions that may wait for a GPU at once; one more is refused with an error frame.
STUDIO_REALTIME_MAX_QUEUED = env.int("STUDIO_REALTIME_MAX_QUEUED", 8, minimum=0, maximum=10000)
# Lifetime of the tokens POST /api/realtime/token mints for ?token= (seconds).
STUDIO_REALTIME_TOKEN_TTL = env.int("STUDIO_REALTIME_TOKEN_TTL", 300, minimum=10, maximum=86400)

# --- logging --------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {LOG_LEVEL!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "studio.logging.RedactSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False}},
}
