//! The supplier inventory feed: adjustments of one product's stock, applied strictly in the
//! order they were accepted per sku (the message group), different skus side by side.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::MessageKind;

/// Direct exchange of the FIFO partitions; the routing key is the partition's queue name.
pub const INVENTORY_EXCHANGE: &str = "inventory.fifo";
/// Dead-letter exchange (fanout) and queue shared by every partition.
pub const INVENTORY_DLX: &str = "inventory.fifo.dlx";
pub const INVENTORY_DLQ: &str = "inventory.fifo.dlq";
/// How long a deduplication id keeps answering with the first adjustment, in seconds.
pub const DEDUP_WINDOW_SECS: i64 = 300;
/// Largest stock a product can hold (the `products_stock_cap` constraint).
pub const MAX_STOCK_LEVEL: i64 = 1_000_000_000;

/// The queue of partition `index` (0-based): `inventory.fifo.p0`, `inventory.fifo.p1`, ...
pub fn partition_queue(index: u16) -> String {
    format!("{INVENTORY_EXCHANGE}.p{index}")
}

/// The partition of a sku among `partitions`: 64-bit FNV-1a of the sku's bytes, modulo the
/// count. The function is fixed (not Rust's randomised hasher) so that every process and
/// every version maps a sku to the same partition.
pub fn partition_of(sku: &str, partitions: u16) -> u16 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sku.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(partitions.max(1))) as u16
}

/// What an adjustment does to the stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AdjustmentOp {
    /// Set the stock to `quantity`.
    Set,
    /// Add `quantity` (negative: remove).
    Add,
}

impl AdjustmentOp {
    pub fn as_str(self) -> &'static str {
        match self {
            AdjustmentOp::Set => "set",
            AdjustmentOp::Add => "add",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "set" => Some(AdjustmentOp::Set),
            "add" => Some(AdjustmentOp::Add),
            _ => None,
        }
    }

    /// The stock after applying this op to `stock`.
    pub fn apply(self, stock: i64, quantity: i64) -> i64 {
        match self {
            AdjustmentOp::Set => quantity,
            AdjustmentOp::Add => stock + quantity,
        }
    }
}

/// Body of `POST /api/v1/inventory/adjustments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AdjustmentRequest {
    /// The product (the message group).
    #[cfg_attr(feature = "openapi", schema(example = "KIT-00001"))]
    pub sku: String,
    pub op: AdjustmentOp,
    /// `set`: 0 to 1 000 000 000; `add`: -1 000 000 000 to 1 000 000 000, not 0.
    #[serde(deserialize_with = "crate::integral::i64")]
    pub quantity: i64,
    /// Why (free text, at most 200 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The supplier's own reference (at most 100 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier_ref: Option<String>,
}

/// Answer of `POST /api/v1/inventory/adjustments` (202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdjustmentAccepted {
    pub id: Uuid,
    /// True when the deduplication id was seen in the last five minutes: `id` is then the
    /// first adjustment's, and nothing new was queued.
    pub duplicate: bool,
    /// Position of the adjustment in its sku's order (1, 2, ...).
    pub sequence: i64,
}

/// One adjustment of a sku's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppliedAdjustment {
    pub id: Uuid,
    pub sequence: i64,
    pub op: AdjustmentOp,
    pub quantity: i64,
    pub dedup_id: String,
    /// `applied`, or `refused` when the result would have left 0..=1 000 000 000 (the stock
    /// moved under orders since the adjustment was accepted); a refused one changes nothing.
    pub outcome: String,
    /// The stock right after this adjustment.
    pub stock_after: i64,
    pub accepted_at: DateTime<Utc>,
    pub applied_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier_ref: Option<String>,
}

/// `GET /api/v1/inventory/{sku}/adjustments`: oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdjustmentPage {
    pub items: Vec<AppliedAdjustment>,
    pub page: u32,
    pub per_page: u32,
    /// Applied (or refused) adjustments of the sku, over all pages.
    pub total: i64,
    /// Accepted adjustments not applied yet.
    pub pending: i64,
}

/// One FIFO partition as the broker sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FifoPartition {
    pub index: u16,
    pub queue: String,
    /// Messages waiting.
    pub ready: Option<u64>,
    /// Delivered, not acknowledged yet.
    pub in_flight: Option<u64>,
    /// Consumers registered (one active, the others standing by).
    pub consumers: Option<u64>,
    /// Consumer tag of the active consumer (`<worker>.p<index>`), when one is active.
    pub active_consumer: Option<String>,
}

/// `GET /api/v1/ops/fifo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FifoView {
    pub partitions: Vec<FifoPartition>,
    /// Messages in `inventory.fifo.dlq`.
    pub dlq_depth: Option<u64>,
    /// False when the management API did not answer (figures are then missing).
    pub broker_reachable: bool,
}

/// Command: apply the adjustments of `sku` up to `sequence` (this one included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyAdjustment {
    pub adjustment_id: Uuid,
    pub sku: String,
    pub sequence: i64,
}

impl MessageKind for ApplyAdjustment {
    const KIND: &'static str = "ApplyAdjustment";
    const SCHEMA_VERSION: u32 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_in_range() {
        // Fixed values: a change of the function would move skus between partitions.
        assert_eq!(partition_of("KIT-00001", 8), partition_of("KIT-00001", 8));
        for n in [1u16, 2, 8, 16] {
            for i in 0..200 {
                assert!(partition_of(&format!("SKU-{i}"), n) < n);
            }
        }
        assert_eq!(partition_of("A", 0), 0);
        let spread: std::collections::HashSet<u16> = (0..200)
            .map(|i| partition_of(&format!("SKU-{i}"), 8))
            .collect();
        assert_eq!(spread.len(), 8, "200 skus reach every partition");
    }

    #[test]
    fn the_request_refuses_unknown_fields() {
        let ok: AdjustmentRequest =
            serde_json::from_str(r#"{"sku":"A","op":"add","quantity":-3}"#).unwrap();
        assert_eq!(ok.op, AdjustmentOp::Add);
        assert!(
            serde_json::from_str::<AdjustmentRequest>(
                r#"{"sku":"A","op":"add","quantity":1,"x":1}"#
            )
            .is_err()
        );
        assert!(
            serde_json::from_str::<AdjustmentRequest>(r#"{"sku":"A","op":"mul","quantity":1}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<AdjustmentRequest>(r#"{"sku":"A","op":"set"}"#).is_err());
        let two: AdjustmentRequest =
            serde_json::from_str(r#"{"sku":"A","op":"set","quantity":2.0}"#).unwrap();
        assert_eq!(two.quantity, 2);
        assert!(
            serde_json::from_str::<AdjustmentRequest>(r#"{"sku":"A","op":"set","quantity":2.5}"#)
                .is_err()
        );
    }
}
