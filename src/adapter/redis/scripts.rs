//! Lua scripts that decide presence transitions atomically in Redis, so two
//! nodes never both announce, or both miss, a member joining or leaving.
//!
//! Per channel: `users` (user -> sockets on all nodes), `info` (user ->
//! user_info of the first socket) and one `node` hash per node (user ->
//! sockets on that node), which is what lets survivors subtract a dead
//! node's share and a node rewrite its own after an outage.

use redis::aio::ConnectionManager;
use redis::{RedisResult, Script};

use super::keys::PresenceKeys;

const JOIN: &str = r#"
local users, info, node, nodeset = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local user, user_info, max, member = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
if redis.call('HEXISTS', users, user) == 0 and redis.call('HLEN', users) >= max then
  return {-1, {}}
end
redis.call('HINCRBY', node, user, 1)
redis.call('SADD', nodeset, member)
local added = 0
if redis.call('HINCRBY', users, user, 1) == 1 then
  redis.call('HSET', info, user, user_info)
  added = 1
end
return {added, redis.call('HGETALL', info)}
"#;

const LEAVE: &str = r#"
local users, info, node = KEYS[1], KEYS[2], KEYS[3]
local user = ARGV[1]
local mine = tonumber(redis.call('HGET', node, user) or '0')
if mine <= 0 then return 0 end
if mine == 1 then redis.call('HDEL', node, user) else redis.call('HINCRBY', node, user, -1) end
if redis.call('HINCRBY', users, user, -1) <= 0 then
  redis.call('HDEL', users, user)
  redis.call('HDEL', info, user)
  return 1
end
return 0
"#;

/// Replaces one node's share of a channel with ARGV triples
/// (user, sockets, user_info); returns {added users, removed users}.
const REPLACE: &str = r#"
local users, info, node = KEYS[1], KEYS[2], KEYS[3]
local old = {}
local flat = redis.call('HGETALL', node)
for i = 1, #flat, 2 do old[flat[i]] = tonumber(flat[i + 1]) end
redis.call('DEL', node)
local added, removed = {}, {}
local function apply(user, delta, user_info)
  if delta == 0 then return end
  local before = tonumber(redis.call('HGET', users, user) or '0')
  local after = redis.call('HINCRBY', users, user, delta)
  if after <= 0 then
    redis.call('HDEL', users, user)
    redis.call('HDEL', info, user)
    if before > 0 then table.insert(removed, user) end
  elseif before <= 0 then
    redis.call('HSET', info, user, user_info)
    table.insert(added, user)
  end
end
for i = 1, #ARGV, 3 do
  local user, n = ARGV[i], tonumber(ARGV[i + 1])
  redis.call('HSET', node, user, n)
  apply(user, n - (old[user] or 0), ARGV[i + 2])
  old[user] = nil
end
for user, n in pairs(old) do apply(user, -n, 'null') end
return {added, removed}
"#;

/// The outcome of a join.
pub enum Joined {
    /// The channel is full of other users.
    Full,
    /// Joined; `added` when this is the user's first socket anywhere.
    /// `members` are (user_id, user_info JSON) of everyone on the channel.
    Ok {
        added: bool,
        members: Vec<(String, String)>,
    },
}

/// The compiled scripts (hashed once, sent with EVALSHA).
pub struct Scripts {
    join: Script,
    leave: Script,
    replace: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            join: Script::new(JOIN),
            leave: Script::new(LEAVE),
            replace: Script::new(REPLACE),
        }
    }
}

impl Scripts {
    #[allow(clippy::too_many_arguments)]
    pub async fn join(
        &self,
        redis: &mut ConnectionManager,
        keys: &PresenceKeys,
        node_set: &str,
        set_member: &str,
        user: &str,
        user_info: &str,
        max_members: usize,
    ) -> RedisResult<Joined> {
        let (status, flat): (i64, Vec<String>) = self
            .join
            .key(&keys.users)
            .key(&keys.info)
            .key(&keys.node)
            .key(node_set)
            .arg(user)
            .arg(user_info)
            .arg(max_members)
            .arg(set_member)
            .invoke_async(redis)
            .await?;
        if status < 0 {
            return Ok(Joined::Full);
        }
        let members = flat
            .chunks_exact(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect();
        Ok(Joined::Ok {
            added: status == 1,
            members,
        })
    }

    /// Removes one socket of `user`; true when the user left the channel.
    pub async fn leave(
        &self,
        redis: &mut ConnectionManager,
        keys: &PresenceKeys,
        user: &str,
    ) -> RedisResult<bool> {
        let removed: i64 = self
            .leave
            .key(&keys.users)
            .key(&keys.info)
            .key(&keys.node)
            .arg(user)
            .invoke_async(redis)
            .await?;
        Ok(removed == 1)
    }

    /// Sets a node's whole share of a channel; returns (added, removed) users.
    pub async fn replace(
        &self,
        redis: &mut ConnectionManager,
        keys: &PresenceKeys,
        members: &[(String, u32, String)],
    ) -> RedisResult<(Vec<String>, Vec<String>)> {
        let mut invocation = self.replace.key(&keys.users);
        invocation.key(&keys.info).key(&keys.node);
        for (user, sockets, info) in members {
            invocation.arg(user).arg(*sockets).arg(info);
        }
        invocation.invoke_async(redis).await
    }
}
