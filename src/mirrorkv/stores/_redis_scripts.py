"""The Redis store's server-side Lua scripts and the helper that runs them by SHA.

Every write of :class:`~mirrorkv.stores.redis.RedisStore` is one script, so
the value, its metadata hash and its entry in the listing index change
together (Redis runs a script atomically: no other command runs in between).

Layout (``P`` is the namespace, wrapped in a hash tag ``{ns}`` on a cluster):

* ``P:<key>``: a string, the value itself (what ``GET`` returns);
* ``P#meta:<key>``: a hash with the fields ``size``, ``etag``, ``modified``,
  ``content_type``, ``metadata`` (JSON) and ``version``. ``etag`` is absent
  after a native ``incr`` (Lua has no MD5); readers then compute it from
  the value, which they fetch in the same script;
* ``P#index``: a sorted set of every key, all with score 0, so that
  ``ZRANGEBYLEX`` walks it in the byte order of the keys' UTF-8 (S3 order).

Scripts name the keys they touch through the value and meta key prefixes
they are given; on a cluster every one of them carries the same hash tag, so
they all live in the slot of ``KEYS[1]``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from redis.exceptions import NoScriptError

__all__ = [
    "COPY",
    "DELETE",
    "DELETE_MANY",
    "HEAD",
    "INCR",
    "LIST",
    "PUT",
    "PUT_MANY",
    "Script",
]


class Script:
    """A Lua script called by its SHA1 (``EVALSHA``), loaded on the first ``NOSCRIPT``."""

    __slots__ = ("lua", "sha")

    def __init__(self, lua: str) -> None:
        self.lua = lua
        self.sha = hashlib.sha1(lua.encode(), usedforsecurity=False).hexdigest()

    def __call__(self, client: Any, keys: tuple[str, ...], *args: Any) -> Any:
        """Run the script on ``client`` with ``keys`` and ``args``; one round trip when loaded."""
        try:
            return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.lua)
            return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)

    def queue(self, pipe: Any, keys: tuple[str, ...], *args: Any) -> None:
        """Queue a call on a pipeline (the caller loads the script first, see :meth:`load`)."""
        pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)

    def load(self, client: Any) -> None:
        """Load the script into the server's script cache."""
        client.script_load(self.lua)


# put(value, meta, index; member, data, etag, modified, content_type, metadata, version,
#     ttl_ms, condition, expected) -> 1 written, 0 precondition failed,
#     {value} when if_match meets a value without a stored etag (the caller
#     compares the MD5 itself and retries with condition "v": value equals).
PUT = Script(
    """
local cond = ARGV[9]
if cond == '*' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
elseif cond == 'm' then
  local etag = redis.call('HGET', KEYS[2], 'etag')
  if not etag then
    local current = redis.call('GET', KEYS[1])
    if not current then return 0 end
    return {current}
  end
  if etag ~= ARGV[10] then return 0 end
elseif cond == 'v' then
  if redis.call('GET', KEYS[1]) ~= ARGV[10] then return 0 end
end
local ttl = ARGV[8]
if ttl == '' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'size', string.len(ARGV[2]), 'etag', ARGV[3],
  'modified', ARGV[4], 'content_type', ARGV[5], 'metadata', ARGV[6], 'version', ARGV[7])
if ttl ~= '' then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('ZADD', KEYS[3], 0, ARGV[1])
return 1
"""
)

# put_many(index; value_prefix, meta_prefix, modified, content_type, version_prefix,
#          first_counter, then (member, data, etag) for each key) -> count written.
PUT_MANY = Script(
    """
local vp, mp, modified, ctype = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local version_prefix, first = ARGV[5], tonumber(ARGV[6])
local n = 0
for i = 7, #ARGV, 3 do
  local member, data = ARGV[i], ARGV[i + 1]
  local meta = mp .. member
  redis.call('SET', vp .. member, data)
  redis.call('DEL', meta)
  redis.call('HSET', meta, 'size', string.len(data), 'etag', ARGV[i + 2],
    'modified', modified, 'content_type', ctype, 'metadata', '{}',
    'version', version_prefix .. string.format('%x', first + n))
  redis.call('ZADD', KEYS[1], 0, member)
  n = n + 1
end
return n
"""
)

# delete(value, meta, index; member) -> nothing.
DELETE = Script(
    """
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""
)

# delete_many(index; value_prefix, meta_prefix, members...) -> nothing.
DELETE_MANY = Script(
    """
local vp, mp = ARGV[1], ARGV[2]
for i = 3, #ARGV do
  local member = ARGV[i]
  redis.call('DEL', vp .. member, mp .. member)
  redis.call('ZREM', KEYS[1], member)
end
return 1
"""
)

# head(value, meta; with_value) -> nil where absent, else
# {size, etag, modified, content_type, metadata, version, value}; the value
# is there when asked for or when the etag is not stored.
HEAD = Script(
    """
local f = redis.call('HMGET', KEYS[2], 'size', 'etag', 'modified', 'content_type',
  'metadata', 'version')
if not f[1] then return false end
if ARGV[1] == '1' or not f[2] then
  local value = redis.call('GET', KEYS[1])
  if not value then return false end
  f[7] = value
end
return f
"""
)

# incr(value, meta, index; member, delta, created, modified, version, content_type)
# -> the new value as decimal bytes, or nil when the value is not an integer
# Redis can add to (the caller then takes the generic path, which says why).
INCR = Script(
    """
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[3])
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'size', string.len(ARGV[3]), 'modified', ARGV[4],
    'content_type', ARGV[6], 'metadata', '{}', 'version', ARGV[5])
  redis.call('ZADD', KEYS[3], 0, ARGV[1])
  return ARGV[3]
end
local result = redis.pcall('INCRBY', KEYS[1], ARGV[2])
if type(result) == 'table' and result.err then return false end
local value = redis.call('GET', KEYS[1])
redis.call('HSET', KEYS[2], 'size', string.len(value), 'modified', ARGV[4], 'version', ARGV[5])
redis.call('HDEL', KEYS[2], 'etag')
return value
"""
)

# copy(source value, source meta, target value, target meta, index; target member,
#      modified, version) -> nil where the source is absent, else
#      {size, etag or nil, content_type, metadata, value where the etag is not stored}.
COPY = Script(
    """
local value = redis.call('GET', KEYS[1])
if not value then return false end
local f = redis.call('HMGET', KEYS[2], 'etag', 'content_type', 'metadata')
redis.call('SET', KEYS[3], value)
redis.call('DEL', KEYS[4])
redis.call('HSET', KEYS[4], 'size', string.len(value), 'modified', ARGV[2],
  'content_type', f[2] or 'application/octet-stream', 'metadata', f[3] or '{}',
  'version', ARGV[3])
if f[1] then redis.call('HSET', KEYS[4], 'etag', f[1]) end
redis.call('ZADD', KEYS[5], 0, ARGV[1])
local out = {string.len(value), f[1], f[2] or 'application/octet-stream', f[3] or '{}'}
if not f[1] then out[5] = value end
return out
"""
)

# list(index; min, max, count, value_prefix, meta_prefix, with_meta) ->
# {scanned, last member scanned, entries...}. An entry is the member alone
# (keys only) or the member, the six metadata fields and the value (where
# the etag is not stored, else nil). Index entries whose key has expired
# (a put with a ttl) are removed here: the index is pruned lazily.
LIST = Script(
    """
local members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
local out = {#members, members[#members] or ''}
local vp, mp, with_meta = ARGV[4], ARGV[5], ARGV[6] == '1'
for _, member in ipairs(members) do
  if with_meta then
    local f = redis.call('HMGET', mp .. member, 'size', 'etag', 'modified', 'content_type',
      'metadata', 'version')
    if f[1] then
      out[#out + 1] = member
      for j = 1, 6 do out[#out + 1] = f[j] end
      if f[2] then
        out[#out + 1] = false
      else
        out[#out + 1] = redis.call('GET', vp .. member) or ''
      end
    else
      redis.call('ZREM', KEYS[1], member)
    end
  elseif redis.call('EXISTS', mp .. member) == 1 then
    out[#out + 1] = member
  else
    redis.call('ZREM', KEYS[1], member)
  end
end
return out
"""
)
