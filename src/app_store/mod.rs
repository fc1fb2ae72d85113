//! The app store: apps kept in PostgreSQL or MySQL/MariaDB, one row each
//! (see `schema`). Every query Herald makes of the database is in this
//! module; what the rows mean to a running node (the cache, the refresh,
//! applying a change) is `catalog`'s.

pub mod row;
pub mod schema;

use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};

use self::row::Field;
use self::schema::{quote, Column};
use crate::config::{AppConfig, AppStoreConfig, StoreKind};

/// How long one query may take (the pool's wait for a connection
/// included) before the database counts as unavailable.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// Connections each node keeps to the database at most.
const POOL_SIZE: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database did not answer (or refused the query).
    #[error("the app store is unavailable: {0}")]
    Unavailable(String),
    /// An app with that id or key exists.
    #[error("{0}")]
    Conflict(String),
    /// A row that is not an app.
    #[error("a row of the app store is invalid: {0}")]
    Invalid(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn written(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict("an app with this id or key exists".to_owned())
        }
        _ => unavailable(e),
    }
}

/// How to open one connection, kept to say why none opens.
#[derive(Clone)]
enum Options {
    Postgres(PgConnectOptions),
    MySql(MySqlConnectOptions),
}

#[derive(Clone)]
enum Pool {
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// `values` bound to `query` in order, alike for both databases.
fn bound<'q, DB: sqlx::Database>(
    mut query: sqlx::query::Query<'q, DB, DB::Arguments<'q>>,
    values: Vec<Field>,
) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>>
where
    bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for value in values {
        query = match value {
            Field::Bool(b) => query.bind(b),
            Field::Integer(i) => query.bind(i),
            Field::Text(s) | Field::Json(s) => query.bind(s),
            Field::NullText => query.bind(None::<String>),
            Field::NullInteger => query.bind(None::<i64>),
        };
    }
    query
}

/// A connection pool to the apps table.
pub struct AppStore {
    pool: Pool,
    options: Options,
    /// The runtime the pool's connections live on: every query runs there
    /// (a request handler's worker thread has a runtime of its own, and a
    /// connection is served by the reactor it was opened on).
    home: tokio::runtime::Handle,
    kind: StoreKind,
    table: String,
    columns: Vec<Column>,
}

impl AppStore {
    /// A pool that connects when first used (so a node can start while the
    /// database is away, when it has a fallback). Called on a Tokio
    /// runtime, which the queries then run on.
    pub fn open(config: &AppStoreConfig) -> StoreResult<AppStore> {
        let url = config
            .url
            .as_deref()
            .ok_or_else(|| StoreError::Invalid("no [app_store] url".to_owned()))?;
        let kind = StoreKind::of(url)
            .ok_or_else(|| StoreError::Invalid("not a postgres:// or mysql:// URL".to_owned()))?;
        // (The URL's own text is never in an error: it may hold a password.)
        let refused = |e: sqlx::Error| StoreError::Invalid(format!("app_store.url: {e}"));
        let (pool, options) = match kind {
            StoreKind::Postgres => {
                let options = PgConnectOptions::from_str(url).map_err(refused)?;
                let pool = PgPoolOptions::new()
                    .max_connections(POOL_SIZE)
                    .acquire_timeout(QUERY_TIMEOUT)
                    .connect_lazy_with(options.clone());
                (Pool::Postgres(pool), Options::Postgres(options))
            }
            StoreKind::MySql => {
                let url = match url.strip_prefix("mariadb://") {
                    Some(rest) => format!("mysql://{rest}"),
                    None => url.to_owned(),
                };
                let options = MySqlConnectOptions::from_str(&url).map_err(refused)?;
                let pool = MySqlPoolOptions::new()
                    .max_connections(POOL_SIZE)
                    .acquire_timeout(QUERY_TIMEOUT)
                    .connect_lazy_with(options.clone());
                (Pool::MySql(pool), Options::MySql(options))
            }
        };
        let home = tokio::runtime::Handle::try_current()
            .map_err(|_| StoreError::Invalid("the app store needs a Tokio runtime".to_owned()))?;
        Ok(AppStore {
            pool,
            options,
            home,
            kind,
            table: config.table.clone(),
            columns: schema::columns(),
        })
    }

    /// Opens one connection outside the pool: the database's own reason
    /// when it cannot be reached (the pool only says it timed out). For
    /// start-up and `herald apps migrate`, not for lookups.
    pub async fn reachable(&self) -> StoreResult<()> {
        use sqlx::ConnectOptions;
        let options = self.options.clone();
        let attempt = async move {
            match options {
                Options::Postgres(o) => o.connect().await.map(drop),
                Options::MySql(o) => o.connect().await.map(drop),
            }
        };
        self.at_home(attempt, |e| unavailable(format!("cannot connect: {e}")))
            .await
    }

    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn quoted_table(&self) -> String {
        quote(self.kind, &self.table)
    }

    /// The query that reads rows as JSON objects, with `filter` after it.
    fn select(&self, filter: &str) -> String {
        match self.kind {
            StoreKind::Postgres => {
                format!(
                    "SELECT to_jsonb(t)::text FROM {} t {filter}",
                    self.quoted_table()
                )
            }
            StoreKind::MySql => {
                let mut names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
                names.extend([schema::PREVIOUS_SECRET, schema::PREVIOUS_SECRET_UNTIL]);
                let pairs: Vec<String> = names
                    .iter()
                    .map(|n| format!("'{n}', {}", quote(self.kind, n)))
                    .collect();
                format!(
                    "SELECT CAST(JSON_OBJECT({}) AS {}) FROM {} {filter}",
                    pairs.join(", "),
                    self.text(),
                    self.quoted_table()
                )
            }
        }
    }

    /// The type a value is cast to so that it reads as a `String`.
    fn text(&self) -> &'static str {
        match self.kind {
            StoreKind::Postgres => "TEXT",
            StoreKind::MySql => "CHAR",
        }
    }

    /// The `n`th bind placeholder.
    fn placeholder(&self, n: usize) -> String {
        match self.kind {
            StoreKind::Postgres => format!("${n}"),
            StoreKind::MySql => "?".to_owned(),
        }
    }

    /// Runs `query` on the pool's runtime, within `QUERY_TIMEOUT`.
    async fn at_home<T: Send + 'static>(
        &self,
        query: impl std::future::Future<Output = Result<T, sqlx::Error>> + Send + 'static,
        error: fn(sqlx::Error) -> StoreError,
    ) -> StoreResult<T> {
        let task = self
            .home
            .spawn(async move { tokio::time::timeout(QUERY_TIMEOUT, query).await });
        match task.await {
            Ok(Ok(result)) => result.map_err(error),
            Ok(Err(_)) => Err(unavailable("no answer in time")),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn rows(&self, sql: &str, arg: Option<&str>) -> StoreResult<Vec<String>> {
        let (sql, arg, pool) = (sql.to_owned(), arg.map(str::to_owned), self.pool.clone());
        let query = async move {
            match pool {
                Pool::Postgres(pool) => {
                    let query = sqlx::query_scalar::<_, String>(&sql);
                    let query = match arg {
                        Some(arg) => query.bind(arg),
                        None => query,
                    };
                    query.fetch_all(&pool).await
                }
                Pool::MySql(pool) => {
                    let query = sqlx::query_scalar::<_, String>(&sql);
                    let query = match arg {
                        Some(arg) => query.bind(arg),
                        None => query,
                    };
                    query.fetch_all(&pool).await
                }
            }
        };
        self.at_home(query, unavailable).await
    }

    fn decode(&self, rows: Vec<String>) -> StoreResult<Vec<AppConfig>> {
        rows.iter()
            .map(|text| row::decode(&self.columns, text).map_err(StoreError::Invalid))
            .collect()
    }

    /// Every app.
    pub async fn all(&self) -> StoreResult<Vec<AppConfig>> {
        let sql = self.select(&format!("ORDER BY {}", quote(self.kind, "id")));
        let rows = self.rows(&sql, None).await?;
        self.decode(rows)
    }

    async fn one(&self, column: &str, value: &str) -> StoreResult<Option<AppConfig>> {
        let filter = format!(
            "WHERE {} = {}",
            quote(self.kind, column),
            self.placeholder(1)
        );
        let rows = self.rows(&self.select(&filter), Some(value)).await?;
        Ok(self.decode(rows)?.into_iter().next())
    }

    /// The app with this key (one row read).
    pub async fn by_key(&self, key: &str) -> StoreResult<Option<AppConfig>> {
        self.one("key", key).await
    }

    /// The app with this id (one row read).
    pub async fn by_id(&self, id: &str) -> StoreResult<Option<AppConfig>> {
        self.one("id", id).await
    }

    /// Adds an app; `Conflict` when its id or key is taken.
    pub async fn insert(&self, app: &AppConfig) -> StoreResult<()> {
        let fields = row::encode(&self.columns, app).map_err(StoreError::Invalid)?;
        let names: Vec<String> = fields.iter().map(|(n, _)| quote(self.kind, n)).collect();
        let values: Vec<String> = fields
            .iter()
            .enumerate()
            .map(|(i, (_, f))| self.value_placeholder(i + 1, f))
            .collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.quoted_table(),
            names.join(", "),
            values.join(", ")
        );
        self.execute(&sql, fields.into_iter().map(|(_, f)| f).collect())
            .await
            .map(|_| ())
    }

    /// Writes every setting of the app with `app.id`; false when there is
    /// none. `Conflict` when its new key is another app's.
    pub async fn update(&self, app: &AppConfig) -> StoreResult<bool> {
        let fields = row::encode(&self.columns, app).map_err(StoreError::Invalid)?;
        let mut sets = Vec::with_capacity(fields.len());
        let mut values = Vec::with_capacity(fields.len() + 1);
        for (i, (name, field)) in fields.into_iter().enumerate() {
            sets.push(format!(
                "{} = {}",
                quote(self.kind, &name),
                self.value_placeholder(i + 1, &field)
            ));
            values.push(field);
        }
        let n = values.len() + 1;
        values.push(Field::Text(app.id.clone()));
        let sql = format!(
            "UPDATE {} SET {}, {} = CURRENT_TIMESTAMP WHERE {} = {}",
            self.quoted_table(),
            sets.join(", "),
            quote(self.kind, "updated_at"),
            quote(self.kind, "id"),
            self.placeholder(n)
        );
        Ok(self.execute(&sql, values).await? > 0)
    }

    /// Removes the app with this id; false when there is none.
    pub async fn delete(&self, id: &str) -> StoreResult<bool> {
        let sql = format!(
            "DELETE FROM {} WHERE {} = {}",
            self.quoted_table(),
            quote(self.kind, "id"),
            self.placeholder(1)
        );
        Ok(self.execute(&sql, vec![Field::Text(id.to_owned())]).await? > 0)
    }

    fn value_placeholder(&self, n: usize, field: &Field) -> String {
        match (self.kind, field) {
            (StoreKind::Postgres, Field::Json(_)) => format!("${n}::jsonb"),
            _ => self.placeholder(n),
        }
    }

    /// Runs a statement with its values; the rows it touched.
    async fn execute(&self, sql: &str, values: Vec<Field>) -> StoreResult<u64> {
        let (sql, pool) = (sql.to_owned(), self.pool.clone());
        let run = async move {
            let sql = sql.as_str();
            match &pool {
                Pool::Postgres(pool) => {
                    let query = bound(sqlx::query(sql), values);
                    query.execute(pool).await.map(|r| r.rows_affected())
                }
                Pool::MySql(pool) => {
                    let query = bound(sqlx::query(sql), values);
                    query.execute(pool).await.map(|r| r.rows_affected())
                }
            }
        };
        self.at_home(run, written).await
    }

    /// Runs a statement without values (schema changes).
    async fn run(&self, sql: &str) -> StoreResult<()> {
        self.execute(sql, Vec::new()).await.map(|_| ())
    }

    /// Creates or upgrades the table (idempotent): the columns every app
    /// setting needs, and on PostgreSQL the trigger that notifies nodes of
    /// changes. Returns the schema version it found.
    pub async fn migrate(&self) -> StoreResult<i64> {
        self.run(&schema::version_table(self.kind, &self.table))
            .await?;
        let versions = format!(
            "SELECT CAST(COALESCE(MAX({}), 0) AS {}) FROM {}",
            quote(self.kind, "version"),
            self.text(),
            quote(self.kind, &format!("{}_schema", self.table))
        );
        let found: i64 = self
            .rows(&versions, None)
            .await?
            .first()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        self.run(&schema::create_table(self.kind, &self.table))
            .await?;
        let present = self.column_names().await?;
        for statement in schema::add_missing(self.kind, &self.table, &present) {
            self.run(&statement).await?;
        }
        if self.kind == StoreKind::Postgres {
            for statement in schema::notify_trigger(&self.table) {
                self.run(&statement).await?;
            }
        }
        if found < schema::VERSION {
            let sql = format!(
                "INSERT INTO {} ({}) VALUES ({})",
                quote(self.kind, &format!("{}_schema", self.table)),
                quote(self.kind, "version"),
                self.placeholder(1)
            );
            self.execute(&sql, vec![Field::Integer(schema::VERSION)])
                .await?;
        }
        Ok(found)
    }

    /// The columns the table has now.
    async fn column_names(&self) -> StoreResult<Vec<String>> {
        let schema_of = match self.kind {
            StoreKind::Postgres => "current_schema()",
            StoreKind::MySql => "DATABASE()",
        };
        let sql = format!(
            "SELECT CAST(column_name AS {}) FROM information_schema.columns WHERE table_name = {} AND table_schema = {schema_of}",
            self.text(),
            self.placeholder(1)
        );
        self.rows(&sql, Some(&self.table)).await
    }

    /// PostgreSQL: a listener on the table's change notifications (the ids
    /// of changed rows); `None` on MySQL, which has none.
    pub async fn listen(&self) -> StoreResult<Option<PgListener>> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(None);
        };
        let mut listener = PgListener::connect_with(pool).await.map_err(unavailable)?;
        listener
            .listen(&schema::channel(&self.table))
            .await
            .map_err(unavailable)?;
        Ok(Some(listener))
    }
}
