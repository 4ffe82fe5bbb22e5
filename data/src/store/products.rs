//! The catalog in Postgres: listing, search, categories and admin updates.

use contracts::{
    AuditAction, Category, EVENTS_EXCHANGE, Envelope, Product, ProductChanged, ProductPage,
    ProductPatch,
};
use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, PgPool, Postgres, QueryBuilder};

use crate::messaging::outbox;
use crate::store::audit::{self, Caller, Record};
use crate::store::retry::{self, TxFailure};

#[derive(Debug, sqlx::FromRow)]
struct ProductRow {
    sku: String,
    name: String,
    description: String,
    category: String,
    price_cents: i64,
    stock: i32,
}

impl From<ProductRow> for Product {
    fn from(r: ProductRow) -> Self {
        Product {
            sku: r.sku,
            name: r.name,
            description: r.description,
            category: r.category,
            price_cents: r.price_cents,
            stock: r.stock,
        }
    }
}

/// Filters of a product listing; page is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProductQuery {
    pub category: Option<String>,
    pub q: Option<String>,
    pub page: u32,
    pub per_page: u32,
}

/// Escapes `%`, `_` and `\` so user text matches literally inside ILIKE.
fn like_pattern(q: &str) -> String {
    let mut out = String::with_capacity(q.len() + 2);
    out.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// `select` followed by a WHERE clause of the filters that are set, and only those: a
/// statement per combination, so that a plan cached for one combination (Postgres switches
/// a prepared statement to a generic plan after five executions) never serves another.
fn filtered<'a>(
    select: &str,
    category: &'a Option<String>,
    pattern: &'a Option<String>,
) -> QueryBuilder<'a, Postgres> {
    let mut builder = QueryBuilder::new(select);
    let mut separator = " WHERE ";
    if let Some(category) = category {
        builder
            .push(separator)
            .push("category = ")
            .push_bind(category);
        separator = " AND ";
    }
    if let Some(pattern) = pattern {
        builder
            .push(separator)
            .push("(name ILIKE ")
            .push_bind(pattern)
            .push(" OR description ILIKE ")
            .push_bind(pattern)
            .push(")");
    }
    builder
}

#[tracing::instrument(skip(pool))]
pub async fn list(pool: &PgPool, query: &ProductQuery) -> sqlx::Result<ProductPage> {
    retry::read(pool, "products.list", move |mut conn| async move {
        list_on(&mut conn, query).await
    })
    .await
}

async fn list_on(conn: &mut PgConnection, query: &ProductQuery) -> sqlx::Result<ProductPage> {
    let pattern = query.q.as_deref().map(like_pattern);
    let total: i64 = filtered("SELECT count(*) FROM products", &query.category, &pattern)
        .build_query_scalar()
        .fetch_one(&mut *conn)
        .await?;
    let offset = i64::from(query.page.saturating_sub(1)) * i64::from(query.per_page);
    let mut select = filtered(
        "SELECT sku, name, description, category, price_cents, stock FROM products",
        &query.category,
        &pattern,
    );
    select
        .push(" ORDER BY sku LIMIT ")
        .push_bind(i64::from(query.per_page))
        .push(" OFFSET ")
        .push_bind(offset);
    let rows: Vec<ProductRow> = select.build_query_as().fetch_all(&mut *conn).await?;
    Ok(ProductPage {
        items: rows.into_iter().map(Product::from).collect(),
        page: query.page,
        per_page: query.per_page,
        total,
    })
}

#[tracing::instrument(skip(pool))]
pub async fn get(pool: &PgPool, sku: &str) -> sqlx::Result<Option<Product>> {
    retry::read(pool, "products.get", move |mut conn| async move {
        let row: Option<ProductRow> = sqlx::query_as(
            "SELECT sku, name, description, category, price_cents, stock FROM products \
             WHERE sku = $1",
        )
        .bind(sku)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(row.map(Product::from))
    })
    .await
}

#[tracing::instrument(skip(pool))]
pub async fn categories(pool: &PgPool) -> sqlx::Result<Vec<Category>> {
    let rows: Vec<(String, i64)> =
        retry::read(pool, "products.categories", move |mut conn| async move {
            sqlx::query_as(
                "SELECT category, count(*) FROM products GROUP BY category ORDER BY category",
            )
            .fetch_all(&mut *conn)
            .await
        })
        .await?;
    Ok(rows
        .into_iter()
        .map(|(name, product_count)| Category {
            name,
            product_count,
        })
        .collect())
}

/// Applies a validated patch, announces the change on the events exchange and records it
/// in the audit trail, in one transaction. `None` (and nothing written) when the sku does
/// not exist.
#[tracing::instrument(skip(pool, patch, traceparent, caller))]
pub async fn update(
    pool: &PgPool,
    sku: &str,
    patch: &ProductPatch,
    traceparent: Option<String>,
    caller: &Caller,
) -> sqlx::Result<Option<Product>> {
    let traceparent = &traceparent;
    retry::once_more(pool, "products.update", TxFailure::retryable, |conn| {
        update_on(conn, pool, sku, patch, traceparent.clone(), caller)
    })
    .await
    .map_err(sqlx::Error::from)
}

/// One attempt at [`update`], telling a failure on COMMIT from one before it.
async fn update_on(
    mut conn: PoolConnection<Postgres>,
    pool: &PgPool,
    sku: &str,
    patch: &ProductPatch,
    traceparent: Option<String>,
    caller: &Caller,
) -> Result<Option<Product>, TxFailure> {
    let mut tx = conn.begin().await?;
    let row: Option<ProductRow> = sqlx::query_as(
        "UPDATE products SET \
           name = COALESCE($2, name), \
           description = COALESCE($3, description), \
           price_cents = COALESCE($4, price_cents), \
           stock = COALESCE($5, stock), \
           updated_at = now() \
         WHERE sku = $1 \
         RETURNING sku, name, description, category, price_cents, stock",
    )
    .bind(sku)
    .bind(&patch.name)
    .bind(&patch.description)
    .bind(patch.price_cents)
    .bind(patch.stock)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let event = Envelope::new(
        ProductChanged {
            sku: row.sku.clone(),
            category: Some(row.category.clone()),
        },
        traceparent,
    );
    outbox::enqueue(&mut tx, EVENTS_EXCHANGE, "product.changed", &event).await?;
    let entry = Record::success(
        caller,
        AuditAction::ProductUpdate,
        Some(format!("product:{}", row.sku)),
        serde_json::json!({ "changes": patch }),
    );
    audit::record(&mut tx, &entry).await?;
    tx.commit().await.map_err(TxFailure::OnCommit)?;
    outbox::announce(pool, &mut conn).await;
    Ok(Some(row.into()))
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_pattern_escapes_wildcards() {
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
        assert_eq!(like_pattern("lamp"), "%lamp%");
    }
}
