//! Operations behind the administrative CLI commands (`init`, `user add`,
//! `token create`, each one write transaction) and the checks around
//! `backup`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::domain::{Role, TokenId, UserId, WorkspaceId};
use crate::store::{self, Failure};
use crate::store::{tokens, users, workspaces, Store};

/// Why an administrative command did nothing.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The input was refused (an invalid email, say).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl Failure for AdminError {
    fn store_error(&self) -> Option<&store::Error> {
        match self {
            AdminError::Store(e) => Some(e),
            AdminError::Invalid(_) => None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Initialized {
    pub user_id: UserId,
    pub workspace_id: WorkspaceId,
    pub token: String,
}

#[derive(Debug, Serialize)]
pub struct UserAdded {
    pub user_id: UserId,
    pub workspace_id: Option<WorkspaceId>,
    pub token: String,
}

#[derive(Debug, Serialize)]
pub struct TokenCreated {
    pub user_id: UserId,
    pub token_id: TokenId,
    pub token: String,
}

/// Trims and checks an email address: something@something, no spaces.
pub fn parse_email(raw: &str) -> Result<String, String> {
    let email = raw.trim();
    let valid = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
    if valid {
        Ok(email.to_string())
    } else {
        Err(format!("invalid email address {email:?}"))
    }
}

/// The given name, trimmed, or the local part of the email.
fn display_name(name: Option<&str>, email: &str) -> String {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None => email.split('@').next().unwrap_or(email).to_string(),
    }
}

/// A user, a workspace they own, and a personal access token.
pub fn init(
    db: &Store,
    email: &str,
    name: Option<&str>,
    workspace: Option<&str>,
) -> Result<Initialized, AdminError> {
    let email = parse_email(email).map_err(AdminError::Invalid)?;
    let name = display_name(name, &email);
    let workspace_name = workspace
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .unwrap_or("Default")
        .to_string();
    db.write_blocking(move |tx| -> Result<_, AdminError> {
        let user = users::insert(tx, &email, &name)?;
        let ws = workspaces::create(tx, &workspace_name, None, "", user.id)?;
        let (_, token) = tokens::create_personal(tx, user.id, "cli", None)?;
        Ok(Initialized {
            user_id: user.id,
            workspace_id: ws.id,
            token,
        })
    })
}

/// A user, optionally a member of an existing workspace, with a PAT.
pub fn add_user(
    db: &Store,
    email: &str,
    name: Option<&str>,
    membership: Option<(WorkspaceId, Role)>,
) -> Result<UserAdded, AdminError> {
    let email = parse_email(email).map_err(AdminError::Invalid)?;
    let name = display_name(name, &email);
    db.write_blocking(move |tx| -> Result<_, AdminError> {
        let user = users::insert(tx, &email, &name)?;
        if let Some((workspace, role)) = membership {
            if workspaces::get(tx, workspace)?.is_none() {
                return Err(
                    store::Error::not_found(format!("workspace {workspace} not found")).into(),
                );
            }
            workspaces::add_member(tx, workspace, user.id, role)?;
        }
        let (_, token) = tokens::create_personal(tx, user.id, "cli", None)?;
        Ok(UserAdded {
            user_id: user.id,
            workspace_id: membership.map(|(w, _)| w),
            token,
        })
    })
}

/// Another PAT for an existing user.
pub fn create_token(
    db: &Store,
    email: &str,
    label: Option<&str>,
) -> Result<TokenCreated, AdminError> {
    let email = parse_email(email).map_err(AdminError::Invalid)?;
    let label = label
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .unwrap_or("cli")
        .to_string();
    db.write_blocking(move |tx| -> Result<_, AdminError> {
        let user = users::find_by_email(tx, &email)?
            .ok_or_else(|| store::Error::not_found(format!("no user with email {email}")))?;
        let (row, token) = tokens::create_personal(tx, user.id, &label, None)?;
        Ok(TokenCreated {
            user_id: user.id,
            token_id: row.id,
            token,
        })
    })
}

/// Refuses a backup destination that is the live database or one of its
/// -wal, -shm or -journal files, however it is spelled (relative, through
/// a symlink, a hard link): the copy would be renamed over the live file,
/// and a running server would go on writing to the unlinked old one, so
/// every later acknowledged write would be lost.
pub fn refuse_live_destination(database: &Path, dest: &Path) -> Result<(), String> {
    let live = database
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", database.display()))?;
    let dest_resolved = resolve(dest);
    for (suffix, what) in [
        ("", "itself"),
        ("-wal", "its own -wal file"),
        ("-shm", "its own -shm file"),
        ("-journal", "its own -journal file"),
    ] {
        let mut file = live.clone().into_os_string();
        file.push(suffix);
        let file = PathBuf::from(file);
        if dest_resolved.as_deref() == Some(file.as_path()) || same_file(&file, dest) {
            return Err(format!(
                "cannot back up the database onto {what}: {}",
                dest.display()
            ));
        }
    }
    Ok(())
}

/// `path` resolved (symlinks, `.`, `..`), or, while it does not exist yet,
/// its resolved directory joined with its name.
fn resolve(path: &Path) -> Option<PathBuf> {
    if let Ok(resolved) = path.canonicalize() {
        return Some(resolved);
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Some(dir.canonicalize().ok()?.join(path.file_name()?))
}

/// Whether both paths exist and are one file (same device and inode).
#[cfg(unix)]
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &Path, _: &Path) -> bool {
    false
}

/// Creates `path` empty and readable by its owner only, replacing a
/// leftover of an earlier failed run. The copy holds the same token hashes
/// and usage as the database, so it must never exist with wider
/// permissions, not even while SQLite writes it (its journal takes the
/// same mode).
pub fn create_private_file(path: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .map(drop)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}
