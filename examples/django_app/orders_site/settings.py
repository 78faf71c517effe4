"""Settings of the orders example: no database, no sessions, no auth;
the gateway and the updates list from the environment, the demo's values
(make run) by default."""

import os

DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
# a key for this example only: set DJANGO_SECRET_KEY anywhere else
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY",
                            "orders-example-not-for-production")
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS",
                               "127.0.0.1,localhost").split(",")

INSTALLED_APPS = ["orders"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "orders_site.urls"
WSGI_APPLICATION = "orders_site.wsgi.application"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request"]},
}]
DATABASES = {}
USE_TZ = True
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"orders": {"handlers": ["console"], "level": "WARNING"}},
}

# the gateway and the REST channel's security definition (conf/demo.json:
# rest_channel customer.updates.rest, security crm-clients)
GATEWAY_URL = os.environ.get("GATEWAY_URL", "http://127.0.0.1:8080")
GATEWAY_USER = os.environ.get("GATEWAY_USER", "crm")
GATEWAY_PASSWORD = os.environ.get("GATEWAY_PASSWORD", "change-me")
GATEWAY_TIMEOUT = float(os.environ.get("GATEWAY_TIMEOUT", "10"))
# 503 answers retried this many times, honouring Retry-After
GATEWAY_RETRIES = int(os.environ.get("GATEWAY_RETRIES", "0"))
ORDERS_CHANNEL = os.environ.get("ORDERS_CHANNEL",
                                "/api/customers/{customer}/updates")

# the list zmqd fills (amqp_channel customer.updates.in into the redis
# service customer.updates.store)
UPDATES_REDIS_URL = os.environ.get("UPDATES_REDIS_URL",
                                   "redis://127.0.0.1:6379/0")
UPDATES_KEY = os.environ.get("UPDATES_KEY", "customer:updates")
UPDATES_PER_PAGE = int(os.environ.get("UPDATES_PER_PAGE", "20"))
