pytest_plugins = [
    "tests.browser",
    "tests.firefox",
    "tests.pg_server",
    "tests.rasa_server",
    "tests.serve_fixtures",
    "tests.voice_fixtures",
]
