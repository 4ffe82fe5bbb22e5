//! Kinesis' mapping of partition keys to shards: the MD5 of the key, read as a 128-bit
//! unsigned big-endian integer, is the record's hash key; shard `i` of `K` owns the hash
//! keys `[i * floor(2^128 / K), (i + 1) * floor(2^128 / K))`, the last shard up to
//! `2^128 - 1` (the ranges `CreateStream` gives a stream of K shards).

use md5::{Digest, Md5};

/// The 128-bit hash key of a partition key.
pub fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// The shards of a stream of `count` shards and their hash-key ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardMap {
    count: u16,
}

impl ShardMap {
    /// A map of `count` shards (at least one).
    pub fn new(count: u16) -> Self {
        ShardMap {
            count: count.max(1),
        }
    }

    pub fn count(self) -> u16 {
        self.count
    }

    /// `floor(2^128 / K)` for K >= 2 (2^128 itself does not fit in a u128).
    fn width(self) -> u128 {
        let k = u128::from(self.count);
        let (q, r) = (u128::MAX / k, u128::MAX % k);
        if r + 1 == k { q + 1 } else { q }
    }

    /// The first and last hash key of shard `index`, both included.
    pub fn range(self, index: u16) -> (u128, u128) {
        if self.count == 1 {
            return (0, u128::MAX);
        }
        let width = self.width();
        let start = u128::from(index) * width;
        let end = if index + 1 == self.count {
            u128::MAX
        } else {
            start + width - 1
        };
        (start, end)
    }

    /// The shard whose range holds `hash_key`.
    pub fn shard_of_hash(self, hash_key: u128) -> u16 {
        if self.count == 1 {
            return 0;
        }
        let index = hash_key / self.width();
        // Hash keys past the last whole range belong to the last shard.
        index.min(u128::from(self.count - 1)) as u16
    }

    /// The shard of a partition key.
    pub fn shard_of(self, partition_key: &str) -> u16 {
        self.shard_of_hash(hash_key(partition_key))
    }
}

/// The partition key of an event, read from its envelope (the outbox row's JSON body):
/// the order id for `order.*` events, the sku for `product.*` and `inventory.*` events,
/// and the message id for any other event or when the field is missing (such an event
/// keeps no order with others).
pub fn partition_key(routing_key: &str, body: &serde_json::Value) -> String {
    let field = match routing_key.split('.').next() {
        Some("order") => Some("order_id"),
        Some("product" | "inventory") => Some("sku"),
        _ => None,
    };
    let payload = body.get("payload");
    let from_field = field
        .and_then(|f| payload.and_then(|p| p.get(f)))
        .and_then(serde_json::Value::as_str);
    match from_field {
        Some(key) => key.to_owned(),
        None => body
            .get("message_id")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// MD5 as a big-endian integer, computed independently (Python's
    /// `int(hashlib.md5(key).hexdigest(), 16)`).
    #[test]
    fn hash_keys_are_the_md5_as_a_big_endian_integer() {
        assert_eq!(hash_key(""), 281949768489412648962353822266799178366);
        assert_eq!(hash_key("a"), 16955237001963240173058271559858726497);
        assert_eq!(hash_key("order-1"), 146877212252092102612564579855103022916);
        assert_eq!(
            hash_key("SKU-0001"),
            123996215103338324954642487590118410520
        );
    }

    /// The ranges AWS documents for streams of 2 and 3 shards.
    #[test]
    fn ranges_are_those_kinesis_creates() {
        let two = ShardMap::new(2);
        assert_eq!(two.range(0), (0, 170141183460469231731687303715884105727));
        assert_eq!(
            two.range(1),
            (170141183460469231731687303715884105728, u128::MAX)
        );
        let three = ShardMap::new(3);
        assert_eq!(three.range(0), (0, 113427455640312821154458202477256070484));
        assert_eq!(
            three.range(1),
            (
                113427455640312821154458202477256070485,
                226854911280625642308916404954512140969
            )
        );
        assert_eq!(
            three.range(2),
            (226854911280625642308916404954512140970, u128::MAX)
        );
        assert_eq!(ShardMap::new(1).range(0), (0, u128::MAX));
        // The ranges cover the hash-key space without gaps or overlaps.
        for k in 1..=16u16 {
            let map = ShardMap::new(k);
            assert_eq!(map.range(0).0, 0);
            assert_eq!(map.range(k - 1).1, u128::MAX);
            for i in 1..k {
                assert_eq!(map.range(i).0, map.range(i - 1).1 + 1);
            }
        }
    }

    #[test]
    fn keys_map_to_the_shard_owning_their_hash_key() {
        // Python: [h * K >> 128 ...] agrees with the ranges for these keys.
        let cases = [
            ("", [0, 1, 2, 3]),
            ("a", [0, 0, 0, 0]),
            ("order-1", [0, 0, 1, 1]),
        ];
        for (key, expected) in cases {
            for (k, want) in (1..=4u16).zip(expected) {
                assert_eq!(ShardMap::new(k).shard_of(key), want, "{key:?} of {k}");
            }
        }
        for k in 1..=16u16 {
            let map = ShardMap::new(k);
            for i in 0..k {
                let (start, end) = map.range(i);
                assert_eq!(map.shard_of_hash(start), i);
                assert_eq!(map.shard_of_hash(end), i);
            }
        }
    }

    #[test]
    fn partition_keys_per_event_type() {
        let order = json!({"message_id": "m1", "payload": {"order_id": "o1", "total_cents": 5}});
        assert_eq!(partition_key("order.fulfilled", &order), "o1");
        let product = json!({"message_id": "m2", "payload": {"sku": "SKU-1"}});
        assert_eq!(partition_key("product.changed", &product), "SKU-1");
        assert_eq!(partition_key("inventory.adjusted", &product), "SKU-1");
        assert_eq!(partition_key("something.else", &product), "m2");
        assert_eq!(partition_key("order.placed", &product), "m2");
    }
}
