def redis_ping() -> bool:
    return True
