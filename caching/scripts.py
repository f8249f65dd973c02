"""The Lua scripts of the caching layer, and how they are run.

Each script receives every key it touches in ``KEYS`` (built by ``caching.keys``) and
builds no key name itself. A stamp is ``<epoch>.<namespace gen>.<scope gen>``; an entry's
value is framed as ``<fresh-until ms> <stamp> <total>\\n<JSON>`` (``caching.entries``), so a
script reads the expiry and stamp without parsing JSON.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from redis import Redis
from redis.exceptions import NoScriptError

from caching.connection import thread_connection

# Reads one or more entries in one round trip. Per entry, five KEYS: epoch, namespace
# generation, scope generation, entry, lease. ARGV: now ms, lease ms, lease token, then one
# mode per entry. An entry whose stamp is not the current one is a miss. Present and
# fresh: 'hit'. Present but expired: 'refresh' if this call took the lease (it reloads),
# else 'stale'. Missing: mode 'lease' tries the lease ('fill', or 'wait' for its holder);
# mode 'present' answers 'absent' and stops, so later entries are neither read nor leased.
# Returns per entry read: {state, current stamp, value or false}.
# The stamp of the entry whose five KEYS start after KEYS[k]: epoch, namespace generation
# and scope generation, joined by '.' (a missing counter is 0). ``entries.stamp`` is the
# same rule for Python.
STAMP = """
local function stamp_of(k)
  return (redis.call('GET', KEYS[k + 1]) or '0') .. '.' ..
    (redis.call('GET', KEYS[k + 2]) or '0') .. '.' .. (redis.call('GET', KEYS[k + 3]) or '0')
end
"""

LOOKUP = (
    STAMP
    + """
local now = tonumber(ARGV[1])
local found = {}
for i = 0, #KEYS / 5 - 1 do
  local k = i * 5
  local stamp = stamp_of(k)
  local value = redis.call('GET', KEYS[k + 4])
  local fresh_until
  if value then
    local until_ms, filled_under = string.match(value, '^(%d+) (%S+) ')
    if filled_under == stamp then fresh_until = tonumber(until_ms) else value = false end
  end
  local state
  if value then
    if fresh_until > now then
      state = 'hit'
    elseif redis.call('SET', KEYS[k + 5], ARGV[3], 'NX', 'PX', ARGV[2]) then
      state = 'refresh'
    else
      state = 'stale'
    end
  elseif ARGV[4 + i] == 'present' then
    found[#found + 1] = {'absent', stamp, false}
    return found
  elseif redis.call('SET', KEYS[k + 5], ARGV[3], 'NX', 'PX', ARGV[2]) then
    state = 'fill'
  else
    state = 'wait'
  end
  found[#found + 1] = {state, stamp, value}
end
return found
"""
)

# Stores a filled entry only if the stamp is still the one the reader saw before loading:
# a write that committed meanwhile has bumped a counter, so the reader's (possibly old)
# value is dropped instead of stored. Releases the reader's lease.
# KEYS: epoch, namespace generation, scope generation, entry, lease.
# ARGV: stamp, value, ttl ms, lease token.
STORE = (
    STAMP
    + """
local stored = 0
if stamp_of(0) == ARGV[1] then
  redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[3])
  stored = 1
end
if redis.call('GET', KEYS[5]) == ARGV[4] then redis.call('DEL', KEYS[5]) end
return stored
"""
)

# Gives a lease back if this caller still holds it. KEYS: lease. ARGV: lease token.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Script:
    """A Lua script, run with ``EVALSHA`` (``EVAL`` once when Redis does not know it yet).

    Scripts are the hot path of every cached read, so they skip redis-py's per-command
    layers (pool checkout with argument checks, the retry wrapper, the observability
    recorder: 10-25 % of a cache hit's CPU in the benchmark's profiles) and run on the
    calling thread's own connection (``caching.connection.thread_connection``). Any error
    closes that connection; the next call opens a new one.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, client: Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        connection = thread_connection(client)
        try:
            connection.send_command("EVALSHA", self.sha, len(keys), *keys, *args)
            return connection.read_response()
        except NoScriptError:
            connection.send_command("EVAL", self.source, len(keys), *keys, *args)
            return connection.read_response()
        except BaseException:
            connection.disconnect()
            raise


LOOKUP_SCRIPT = Script(LOOKUP)
STORE_SCRIPT = Script(STORE)
RELEASE_SCRIPT = Script(RELEASE)
