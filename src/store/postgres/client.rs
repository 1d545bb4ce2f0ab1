//! A pooled connection that prepares each statement once: the store's
//! modules run the same few dozen statements over and over, and without a
//! cache every call would be parsed and planned again (a round trip and
//! the server's CPU each time). The cache is per connection and bounded.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{NoTls, Row, Statement};
use r2d2_postgres::PostgresConnectionManager;

/// Statements kept per connection: more than the store has, so none is
/// prepared twice; past it the cache starts over.
const STATEMENT_CACHE: usize = 256;

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// What the engine's modules run their SQL on.
pub struct Client {
    inner: postgres::Client,
    statements: HashMap<String, Statement>,
}

impl Client {
    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.inner.prepare(sql)?;
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    pub fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.inner.query(&statement, params)
    }

    pub fn query_one(&mut self, sql: &str, params: Params<'_>) -> Result<Row, postgres::Error> {
        let statement = self.statement(sql)?;
        self.inner.query_one(&statement, params)
    }

    pub fn query_opt(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.inner.query_opt(&statement, params)
    }

    pub fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, postgres::Error> {
        let statement = self.statement(sql)?;
        self.inner.execute(&statement, params)
    }

    /// Runs `sql` (one or more statements, no parameters) uncached.
    pub fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.inner.batch_execute(sql)
    }
}

/// r2d2's manager for [`Client`]s.
pub struct Manager(PostgresConnectionManager<NoTls>);

impl Manager {
    pub fn new(config: postgres::Config) -> Manager {
        Manager(PostgresConnectionManager::new(config, NoTls))
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Client;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Client, postgres::Error> {
        Ok(Client {
            inner: self.0.connect()?,
            statements: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut Client) -> Result<(), postgres::Error> {
        self.0.is_valid(&mut conn.inner)
    }

    fn has_broken(&self, conn: &mut Client) -> bool {
        self.0.has_broken(&mut conn.inner)
    }
}

impl Client {
    /// The driver's client, for the migration runner.
    pub(super) fn driver(&mut self) -> &mut postgres::Client {
        &mut self.inner
    }
}
