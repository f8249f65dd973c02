"""The Lua scripts of the caching layer, and how they are run.

Each script receives every key it touches in ``KEYS`` (built by ``caching.keys``) and
builds no key name itself. A stamp is ``<epoch>.<namespace gen>.<scope gen>``; an entry's
value is framed as ``<fresh-until ms> <stamp> <total>[ <counted ids>]\\n<JSON>``
(``caching.entries``), so a script reads the expiry, the stamp and the ids whose live
counts the entry shows without parsing JSON.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from redis import Redis
from redis.exceptions import AskError, ConnectionError, NoScriptError, TimeoutError

from caching.connection import is_cluster, thread_connection

# The stamp of the entry whose KEYS start after KEYS[k]: epoch, namespace generation and
# scope generation, joined by '.' (a missing counter is 0). ``entries.stamp`` is the same
# rule for Python. ``not_older(a, b)``: each counter of stamp ``a`` is at least ``b``'s (the
# counters only grow, so ``a`` was read at or after ``b``).
STAMP = """
local function stamp_of(k)
  return (redis.call('GET', KEYS[k + 1]) or '0') .. '.' ..
    (redis.call('GET', KEYS[k + 2]) or '0') .. '.' .. (redis.call('GET', KEYS[k + 3]) or '0')
end
local function not_older(a, b)
  local mine = {}
  for n in string.gmatch(a, '%d+') do mine[#mine + 1] = tonumber(n) end
  local i = 0
  for n in string.gmatch(b, '%d+') do
    i = i + 1
    if (mine[i] or 0) < tonumber(n) then return false end
  end
  return true
end
"""

# Reads one or more entries in one round trip. Per entry, five KEYS (epoch, namespace
# generation, scope generation, entry, lease) and, for an entry with live counts, a sixth:
# its counter hash. ARGV: now ms, lease ms, lease token, then per entry three: its mode,
# its number of KEYS, and the stamp it waits on ('' unless the caller waits for a fill).
# An entry filled under the current stamp is served: fresh, 'hit'; expired, 'refresh' if
# this call took the lease (it reloads), else 'stale'. A waiter is also served a frame
# filled under a stamp not older than the one it waits on ('hit'): that fill began after
# the waiter did, or saw the same writes. Missing: mode 'lease' tries the lease ('fill', or
# 'wait' for its holder); mode 'present' answers 'absent' and stops, so later entries are
# neither read nor leased. A served frame whose header lists counted ids gets their counts
# from the counter hash (only if it was started under the current epoch): one string,
# joined by ',', when all are there; else a list with false for each one missing.
# Returns per entry read: {state, current stamp, value or false, counts or false}.
LOOKUP = (
    STAMP
    + """
local now = tonumber(ARGV[1])
local found = {}
local k, a = 0, 4
while k < #KEYS do
  local mode, nkeys, since = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2]
  local stamp = stamp_of(k)
  local value = redis.call('GET', KEYS[k + 4])
  local fresh_until, waited_for
  if value then
    local until_ms, filled_under = string.match(value, '^(%d+) (%S+) ')
    if filled_under == stamp then
      fresh_until = tonumber(until_ms)
    elseif since ~= '' and filled_under and not_older(filled_under, since) then
      waited_for = true
    else
      value = false
    end
  end
  local state
  if waited_for then
    state = 'hit'
  elseif value then
    if fresh_until > now then
      state = 'hit'
    elseif redis.call('SET', KEYS[k + 5], ARGV[3], 'NX', 'PX', ARGV[2]) then
      state = 'refresh'
    else
      state = 'stale'
    end
  elseif mode == 'present' then
    found[#found + 1] = {'absent', stamp, false, false}
    return found
  elseif redis.call('SET', KEYS[k + 5], ARGV[3], 'NX', 'PX', ARGV[2]) then
    state = 'fill'
  else
    state = 'wait'
  end
  local counts = false
  local ids = value and nkeys == 6 and string.match(value, '^%d+ %S+ %S+ (%S+)\\n')
  if ids then
    local fields = {'~epoch'}
    for id in string.gmatch(ids, '[^,]+') do fields[#fields + 1] = id end
    local got = redis.call('HMGET', KEYS[k + 6], unpack(fields))
    if got[1] == string.match(stamp, '^%d+') then
      table.remove(got, 1)
      local whole = true
      for i = 1, #got do
        if not got[i] then whole = false break end
      end
      counts = whole and table.concat(got, ',') or got
    end
  end
  found[#found + 1] = {state, stamp, value, counts}
  k, a = k + nkeys, a + 3
end
return found
"""
)

# Stores a filled entry. Under the stamp the reader saw before loading, if that is still
# the current one; otherwise (a write committed meanwhile) the value is outdated and is
# kept only for the requests that were waiting on this fill (``LOOKUP``'s waiters), never
# over a frame filled under a newer stamp. Returns 1 if stored as current. Releases the
# reader's lease. KEYS: epoch, namespace generation, scope generation, entry, lease (and
# the counter hash, unused). ARGV: stamp, value, ttl ms, lease token.
STORE = (
    STAMP
    + """
local stored = 0
if stamp_of(0) == ARGV[1] then
  redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[3])
  stored = 1
else
  local held = redis.call('GET', KEYS[4])
  local held_under = held and string.match(held, '^%d+ (%S+) ')
  if not held_under or not_older(ARGV[1], held_under) then
    redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[3])
  end
end
if redis.call('GET', KEYS[5]) == ARGV[4] then redis.call('DEL', KEYS[5]) end
return stored
"""
)

# Writes live counts read from the database into the counter hash, unless the versions
# hash holds a newer version for that id (versions come from one database sequence, drawn
# before the counts were read: a higher version saw every write a lower one saw). Writes
# nothing if the epoch moved since the caller read it before its database read (a write
# whose count update was lost may be missing from these counts). The counter hash holds
# counts of one epoch ('~epoch'): the first write under a new one empties it; the versions
# hash outlives epochs, so a refresh older than a count emptied that way is still refused.
# A count equal to the one held is not written again: every write to the counter hash is
# pushed to every in-process tier (caching.local), which drops each entry showing counts.
# KEYS: epoch, counter hash, versions hash. ARGV: the caller's epoch, version, then id and
# count pairs.
COUNT_SET = """
local epoch = redis.call('GET', KEYS[1]) or '0'
if epoch ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[2], '~epoch') ~= epoch then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], '~epoch', epoch)
end
local version = tonumber(ARGV[2])
for i = 3, #ARGV, 2 do
  local held = redis.call('HGET', KEYS[3], ARGV[i])
  if not held or tonumber(held) < version then
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[2])
    if redis.call('HGET', KEYS[2], ARGV[i]) ~= ARGV[i + 1] then
      redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    end
  end
end
return 1
"""

# Claims one shard for the master a new connection reached (``caching.topology``): if the
# run id stored under KEYS[1] is not this server's, the shard's data were written on
# another server (this is a promoted replica, or a restarted master): bump the shard's
# epoch (KEYS[2]) and store this server's id. Returns the id if it bumped, else 0.
CLAIM = """
local id = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
if redis.call('GET', KEYS[1]) == id then return 0 end
redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], id)
return id
"""

# Gives a lease back if this caller still holds it. KEYS: lease. ARGV: lease token.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Script:
    """A Lua script, run with ``EVALSHA`` (``EVAL`` once when Redis does not know it yet).

    Scripts are the hot path of every cached read, so they skip redis-py's per-command
    layers (pool checkout with argument checks, the retry wrapper, the observability
    recorder, and on a cluster the command routing: 10-25 % of a cache hit's CPU in the
    benchmark's profiles) and run on the calling thread's own connection to the server
    of their keys (``caching.connection.thread_connection``; one slot per call on a
    cluster, ``caching.keys``). Any error closes that connection; the next call opens a
    new one. On a cluster, a call answered MOVED or ASK (slots moving), or that lost its
    server, is sent again through the cluster client, which follows the redirection or
    refreshes its slot map (a promoted replica); ``CACHE_CLUSTER_DIRECT=false`` sends
    every call that way.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, client: Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        cluster = is_cluster(client)
        if cluster and not settings.CACHE_CLUSTER_DIRECT:
            return self._routed(client, keys, args)
        connection = thread_connection(client, keys[0])
        try:
            connection.send_command("EVALSHA", self.sha, len(keys), *keys, *args)
            try:
                return connection.read_response()
            except NoScriptError:
                connection.send_command("EVAL", self.source, len(keys), *keys, *args)
                return connection.read_response()
        except AskError:  # MOVED or ASK: only a cluster answers so
            return self._routed(client, keys, args)
        except BaseException as exc:
            connection.disconnect()
            if cluster and isinstance(exc, (ConnectionError, TimeoutError, OSError)):
                return self._routed(client, keys, args)
            raise

    def _routed(self, client: Redis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return client.execute_command("EVAL", self.source, len(keys), *keys, *args)


LOOKUP_SCRIPT = Script(LOOKUP)
STORE_SCRIPT = Script(STORE)
RELEASE_SCRIPT = Script(RELEASE)
