//! Hash slots: which slot a key lives in, and moving a slot with its keys from one shard of a
//! clustered member to another while clients keep using it, as `redis-cli --cluster reshard`
//! does.

use crate::cluster::{Error, LocalCluster};
use crate::resp::{Conn, Reply};

/// Slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// Keys per `CLUSTER GETKEYSINSLOT` + `MIGRATE` round, as redis-cli's default pipeline.
const BATCH: usize = 10;
/// `MIGRATE`'s timeout in milliseconds.
const MIGRATE_TIMEOUT_MS: &str = "5000";

/// CRC16-XMODEM (polynomial 0x1021, initial value 0), the checksum Redis Cluster hashes keys
/// with. Bitwise rather than table-driven: keys in tests are short.
fn crc16(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash slot of `key`, as `CLUSTER KEYSLOT` computes it: CRC16 modulo 16384 of the whole
/// key, or of its hash tag, the bytes between the first `{` and the first `}` after it when
/// there is at least one byte between them (`{user1}.a` and `{user1}.b` share a slot).
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

/// A slot move that [`LocalCluster::begin_move_slot`] left half-way: the target is `IMPORTING`
/// the slot and the source `MIGRATING` it, so the source answers `-ASK` for keys it no longer
/// has. Finish it with [`LocalCluster::finish_move_slot`].
#[derive(Debug)]
#[must_use = "a slot left migrating makes the cluster never settle: finish the move"]
pub struct SlotMove {
    member: usize,
    slot: u16,
    source_port: u16,
    target_port: u16,
    target_id: String,
    moved: usize,
}

impl SlotMove {
    /// The slot being moved.
    pub fn slot(&self) -> u16 {
        self.slot
    }

    /// Port of the primary the slot moves from.
    pub fn source_port(&self) -> u16 {
        self.source_port
    }

    /// Port of the primary the slot moves to.
    pub fn target_port(&self) -> u16 {
        self.target_port
    }

    /// Keys migrated so far.
    pub fn keys_moved(&self) -> usize {
        self.moved
    }
}

impl LocalCluster {
    /// Moves `slot` of member `i`, with its keys, to shard `to_shard` (its current primary),
    /// while clients may keep using it; returns the number of keys moved. See
    /// [`begin_move_slot`](Self::begin_move_slot) for the steps; this returns once the member
    /// has settled.
    ///
    /// # Errors
    /// As [`begin_move_slot`](Self::begin_move_slot) and
    /// [`finish_move_slot`](Self::finish_move_slot).
    pub fn move_slot(&self, i: usize, slot: u16, to_shard: usize) -> Result<usize, Error> {
        let mv = self.begin_move_slot(i, slot, to_shard, 0)?;
        self.finish_move_slot(mv)
    }

    /// Starts moving `slot` of member `i` to shard `to_shard` and stops half-way: sends
    /// `CLUSTER SETSLOT slot IMPORTING source-id` to the target, `CLUSTER SETSLOT slot MIGRATING
    /// target-id` to the source, then migrates up to `keys` of the slot's keys
    /// (`CLUSTER GETKEYSINSLOT`, `MIGRATE ... KEYS ...`). Until
    /// [`finish_move_slot`](Self::finish_move_slot), the source answers `-ASK slot
    /// 127.0.0.1:target` for keys it no longer holds and for new keys, and the target serves
    /// them only after `ASKING`.
    ///
    /// # Errors
    /// On a single-server member, for a slot of 16384 or above or a shard out of range, when the
    /// slot is already on `to_shard`, or when a server refuses a step (the message names it).
    pub fn begin_move_slot(
        &self,
        i: usize,
        slot: u16,
        to_shard: usize,
        keys: usize,
    ) -> Result<SlotMove, Error> {
        if !self.clustered() {
            return Err(Error::new(format!(
                "node {i} is a single server: no slots to move"
            )));
        }
        if slot >= SLOTS || to_shard >= self.shards() {
            return Err(Error::new(format!(
                "move slot {slot} to shard {to_shard}: slots are 0..{SLOTS}, shards 0..{}",
                self.shards()
            )));
        }
        let pw = self.options.password.as_deref();
        let source_port = self.serving_port(i, slot)?;
        let target_port = self.members[i][self.current_primary(i, to_shard)?].port;
        if source_port == target_port {
            return Err(Error::new(format!(
                "slot {slot} of node {i} is already on shard {to_shard}"
            )));
        }
        let mut source = Conn::open(source_port, pw)?;
        let mut target = Conn::open(target_port, pw)?;
        let source_id = source.text(&["CLUSTER", "MYID"])?;
        let target_id = target.text(&["CLUSTER", "MYID"])?;
        let slot_text = slot.to_string();
        // Importing first: a client sent to the target by an ASK must find it ready.
        target.text(&["CLUSTER", "SETSLOT", &slot_text, "IMPORTING", &source_id])?;
        source.text(&["CLUSTER", "SETSLOT", &slot_text, "MIGRATING", &target_id])?;
        let mut mv = SlotMove {
            member: i,
            slot,
            source_port,
            target_port,
            target_id,
            moved: 0,
        };
        self.migrate_keys(&mut source, &mut mv, keys)?;
        Ok(mv)
    }

    /// Migrates the rest of the keys of a move begun with
    /// [`begin_move_slot`](Self::begin_move_slot), then gives the slot to the target with
    /// `CLUSTER SETSLOT slot NODE target-id` on the target, the source and every other primary,
    /// and waits until the member has settled. Returns the number of keys moved in all.
    ///
    /// # Errors
    /// When a server refuses a step or cannot be reached, or the cluster does not settle.
    pub fn finish_move_slot(&self, mut mv: SlotMove) -> Result<usize, Error> {
        let pw = self.options.password.as_deref();
        let mut source = Conn::open(mv.source_port, pw)?;
        self.migrate_keys(&mut source, &mut mv, usize::MAX)?;
        let slot = mv.slot.to_string();
        let setslot = ["CLUSTER", "SETSLOT", slot.as_str(), "NODE", mv.target_id.as_str()];
        // Target first so that it owns the slot before the source stops redirecting with ASK.
        let mut order = vec![mv.target_port, mv.source_port];
        for node in self.members[mv.member].iter().filter(|n| n.answers()) {
            if order.contains(&node.port) {
                continue;
            }
            let info = Conn::open(node.port, pw)?.text(&["INFO", "replication"])?;
            if crate::shards::info_field(&info, "role") == Some("master") {
                order.push(node.port);
            }
        }
        for port in order {
            Conn::open(port, pw)?.text(&setslot)?;
        }
        self.wait_for_cluster_ok(mv.member)?;
        Ok(mv.moved)
    }

    fn migrate_keys(&self, source: &mut Conn, mv: &mut SlotMove, limit: usize) -> Result<(), Error> {
        let slot = mv.slot.to_string();
        let port = mv.target_port.to_string();
        let mut left = limit;
        while left > 0 {
            let count = left.min(BATCH).to_string();
            let Reply::Array(Some(keys)) =
                source.ok(&[b"CLUSTER", b"GETKEYSINSLOT", slot.as_bytes(), count.as_bytes()])?
            else {
                return Err(Error::new("unexpected CLUSTER GETKEYSINSLOT reply".into()));
            };
            if keys.is_empty() {
                break;
            }
            let mut args: Vec<&[u8]> = vec![b"MIGRATE", b"127.0.0.1", port.as_bytes(), b"", b"0"];
            args.push(MIGRATE_TIMEOUT_MS.as_bytes());
            if let Some(pw) = &self.options.password {
                args.extend([b"AUTH".as_slice(), pw.as_bytes()]);
            }
            args.push(b"KEYS");
            for key in &keys {
                let Reply::Bulk(Some(key)) = key else {
                    return Err(Error::new(format!("unexpected key in GETKEYSINSLOT: {key:?}")));
                };
                args.push(key.as_slice());
            }
            source.ok(&args)?;
            mv.moved += keys.len();
            left -= keys.len();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_check_value() {
        // The XMODEM check value from the Redis Cluster specification.
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn hash_tags() {
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
    }
}
