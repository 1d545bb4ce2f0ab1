//! `agenthub` command line: the server and its administrative commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use agenthub::admin::{self, AdminError};
use agenthub::app::Application;
use agenthub::config::{Config, Overrides};
use agenthub::domain::{Role, WorkspaceId};
use agenthub::store::{self, Store};

#[derive(Parser)]
#[command(
    name = "agenthub",
    version,
    about = "Self-hosted control plane for coding-agent runtimes"
)]
struct Cli {
    /// config file (default: ./config.toml when it exists)
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// SQLite database file (overrides config and AGENTHUB_DB)
    #[arg(long, global = true, value_name = "PATH")]
    db: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the default)
    Serve,
    /// Create the first user, a workspace they own and a token
    Init {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
        /// workspace name (default: "Default")
        #[arg(long, value_name = "NAME")]
        workspace: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Manage users
    #[command(subcommand)]
    User(UserCommand),
    /// Manage personal access tokens
    #[command(subcommand)]
    Token(TokenCommand),
    /// Apply database migrations and exit
    Migrate,
    /// Write a consistent copy of the live database to PATH
    Backup {
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Copy a whole install into an empty database (SQLite file ↔ PostgreSQL)
    CopyData {
        /// the install: a SQLite file (live or not) or a postgres:// URL
        #[arg(long, value_name = "SOURCE")]
        from: String,
        /// an empty PostgreSQL database (postgres:// URL) or a new SQLite file
        #[arg(long, value_name = "DEST")]
        to: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user (optionally to a workspace) with a fresh token
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
        /// workspace id to add the user to
        #[arg(long, value_name = "ID")]
        workspace: Option<WorkspaceId>,
        /// role in that workspace
        #[arg(long, value_parser = parse_role, requires = "workspace")]
        role: Option<Role>,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create another personal access token for a user
    Create {
        #[arg(long)]
        email: String,
        /// label shown in the token list
        #[arg(long, value_name = "LABEL")]
        name: Option<String>,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Args)]
struct Output {
    /// print the result as one line of JSON
    #[arg(long)]
    json: bool,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, None | Some(Command::Serve));
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(if serving {
        "info,refinery_core=warn"
    } else {
        "warn"
    }))
    .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let mut overrides = Overrides::from_env();
    if cli.db.is_some() {
        overrides.db = cli.db.clone();
    }
    let config = Config::load(cli.config.as_deref(), &overrides).map_err(|e| e.to_string())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config),
        Command::Migrate => {
            let applied = store::migrate(&config.database).map_err(|e| e.to_string())?;
            println!(
                "{}: {applied} migration(s) applied",
                config.database.describe()
            );
            Ok(())
        }
        Command::Backup { path } => backup(&config, &path),
        // the synchronous driver runs here, on the main thread: no async
        // runtime exists in the CLI
        Command::CopyData { from, to } => {
            for line in agenthub::copy::run(&config.database, &from, &to)? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Init {
            email,
            name,
            workspace,
            output,
        } => {
            let db = open(&config)?;
            let done = admin::init(&db, &email, name.as_deref(), workspace.as_deref())
                .map_err(describe)?;
            output.print(&done, || {
                format!(
                    "user:       {email} ({})\nworkspace:  {}\ntoken:      {}\n\nThe token is shown only once; keep it somewhere safe.",
                    done.user_id, done.workspace_id, done.token
                )
            })
        }
        Command::User(UserCommand::Add {
            email,
            name,
            workspace,
            role,
            output,
        }) => {
            let db = open(&config)?;
            let membership = workspace.map(|w| (w, role.unwrap_or(Role::Member)));
            let done =
                admin::add_user(&db, &email, name.as_deref(), membership).map_err(describe)?;
            output.print(&done, || {
                let ws = match (done.workspace_id, membership) {
                    (Some(w), Some((_, role))) => format!("\nworkspace:  {w} ({})", role.as_str()),
                    _ => String::new(),
                };
                format!(
                    "user:       {email} ({}){ws}\ntoken:      {}\n\nThe token is shown only once; keep it somewhere safe.",
                    done.user_id, done.token
                )
            })
        }
        Command::Token(TokenCommand::Create {
            email,
            name,
            output,
        }) => {
            let db = open(&config)?;
            let done = admin::create_token(&db, &email, name.as_deref()).map_err(describe)?;
            output.print(&done, || {
                format!(
                    "token for {email}: {}\n\nThe token is shown only once; keep it somewhere safe.",
                    done.token
                )
            })
        }
    }
}

impl Output {
    fn print<T: serde::Serialize>(
        &self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> Result<(), String> {
        if self.json {
            println!(
                "{}",
                serde_json::to_string(value).map_err(|e| e.to_string())?
            );
        } else {
            println!("{}", human());
        }
        Ok(())
    }
}

fn describe(err: AdminError) -> String {
    match err {
        AdminError::Store(store::Error::Internal(detail)) => format!("internal error: {detail}"),
        other => other.to_string(),
    }
}

fn open(config: &Config) -> Result<Store, String> {
    Store::open_default(&config.database).map_err(|e| e.to_string())
}

fn serve(config: Config) -> Result<(), String> {
    raise_fd_limit();
    let listen = config.server.listen.clone();
    let db_path = config.database.describe();
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(config).map_err(|e| e.to_string())?;
        log::info!("agenthub listening on http://{listen} (database {db_path})");
        app.run_until_stopped().await.map_err(|e| e.to_string())
    })
}

/// Raises the open-file soft limit to the hard limit: every connection and
/// event stream holds a descriptor, and the common default soft limit of
/// 1024 runs out long before the machine does.
fn raise_fd_limit() {
    #[cfg(unix)]
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => log::info!("open-file limit: {limit}"),
        Err(e) => log::warn!("cannot raise the open-file limit: {e}"),
    }
}

/// Copies the database with SQLite's online backup API into a temporary
/// file beside `dest` (mode 0600), then renames it into place, so `dest` is
/// never a half-written copy. The live database itself is refused as
/// `dest`.
fn backup(config: &Config, dest: &Path) -> Result<(), String> {
    if config.database.url.is_some() {
        return store::backup(&config.database, dest).map_err(|e| format!("backup failed: {e}"));
    }
    let src_path = &config.database.path;
    if !src_path.exists() {
        return Err(format!("database {} does not exist", src_path.display()));
    }
    admin::refuse_live_destination(src_path, dest)?;
    let file_name = dest
        .file_name()
        .ok_or_else(|| format!("{} is not a file path", dest.display()))?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dest.with_file_name(tmp_name);
    admin::create_private_file(&tmp)?;
    let result = store::backup(&config.database, &tmp)
        .map_err(|e| format!("backup failed: {e}"))
        .and_then(|()| {
            std::fs::rename(&tmp, dest).map_err(|e| format!("cannot write {}: {e}", dest.display()))
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    println!("backed up {} to {}", src_path.display(), dest.display());
    Ok(())
}
