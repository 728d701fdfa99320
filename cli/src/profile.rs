//! Where the CLI finds the API and its token: flags, then the environment (`HERALD_API`,
//! `HERALD_TOKEN`), then a profile in the profile file.
//!
//! The file is TOML, at `$HERALD_CONFIG`, else `$XDG_CONFIG_HOME/herald/config.toml`, else
//! `~/.config/herald/config.toml`:
//!
//! ```toml
//! [profile.default]
//! api = "https://abc123.execute-api.us-east-1.amazonaws.com/dev"
//! token = "eyJ…"
//!
//! [profile.local]
//! api = "http://127.0.0.1:3000"
//! token = "acme"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::failure::Failure;

/// The profile used when none is named.
pub const DEFAULT_PROFILE: &str = "default";
/// A profile file larger than this is refused (it holds a few URLs and tokens).
const MAX_FILE_BYTES: u64 = 64 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    profile: BTreeMap<String, Profile>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub api: Option<String>,
    pub token: Option<String>,
}

/// The API and token a command calls with.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub api: String,
    pub token: String,
}

/// The profile file's path from the environment's variables (`get`).
pub fn file_path(get: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(path) = get("HERALD_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    if let Some(base) = get("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        return Some(Path::new(&base).join("herald/config.toml"));
    }
    get("HOME")
        .filter(|p| !p.is_empty())
        .map(|home| Path::new(&home).join(".config/herald/config.toml"))
}

/// The named profile of the file at `path`. A missing file is an empty one, unless a
/// profile other than the default was asked for.
pub fn load(path: Option<&Path>, name: &str) -> Result<Profile, Failure> {
    let Some(path) = path else {
        return Ok(Profile::default());
    };
    let text = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if name == DEFAULT_PROFILE {
                return Ok(Profile::default());
            }
            return Err(Failure::usage(format!(
                "profile `{name}` asked for, but there is no profile file at {}",
                path.display()
            )));
        }
        Err(e) => {
            return Err(Failure::usage(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
        Ok(meta) if meta.len() > MAX_FILE_BYTES => {
            return Err(Failure::usage(format!(
                "{} is larger than {MAX_FILE_BYTES} bytes: is it the right file?",
                path.display()
            )));
        }
        Ok(_) => std::fs::read_to_string(path)
            .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?,
    };
    parse(&text, name).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))
}

/// The named profile in a profile file's text.
pub fn parse(text: &str, name: &str) -> Result<Profile, String> {
    let file: File = toml::from_str(text).map_err(|e| e.message().to_owned())?;
    match file.profile.get(name) {
        Some(profile) => Ok(profile.clone()),
        None if name == DEFAULT_PROFILE => Ok(Profile::default()),
        None => Err(format!(
            "no profile `{name}` (it has: {})",
            file.profile.keys().cloned().collect::<Vec<_>>().join(", ")
        )),
    }
}

/// The API and token from flags or environment (`given`, as clap merged them), else from
/// the profile; a clear error naming every way to give what is missing.
pub fn resolve(given: Profile, profile: Profile) -> Result<Target, Failure> {
    let api = given.api.or(profile.api).ok_or_else(|| {
        Failure::usage(
            "no API URL: pass --api, set HERALD_API, or put `api` in a profile \
             (the stack's ApiUrl output, or http://127.0.0.1:3000 for `make run`)",
        )
    })?;
    let token = given.token.or(profile.token).ok_or_else(|| {
        Failure::usage(
            "no token: pass --token, set HERALD_TOKEN, or put `token` in a profile \
             (a JWT from the stack's issuer; with `make run`, the tenant's name)",
        )
    })?;
    Ok(Target { api, token })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[profile.default]
api = "https://abc.execute-api.us-east-1.amazonaws.com/dev"
token = "t-default"

[profile.local]
api = "http://127.0.0.1:3000"
token = "acme"
"#;

    #[test]
    fn a_named_profile_is_read_and_a_missing_one_is_named() {
        let local = parse(FILE, "local").unwrap();
        assert_eq!(local.api.as_deref(), Some("http://127.0.0.1:3000"));
        assert_eq!(local.token.as_deref(), Some("acme"));
        let missing = parse(FILE, "prod").unwrap_err();
        assert!(missing.contains("no profile `prod`"), "{missing}");
        assert!(missing.contains("default, local"), "{missing}");
        assert_eq!(parse("", DEFAULT_PROFILE).unwrap(), Profile::default());
        assert!(parse("[profile.x]\napi = 1", "x").is_err());
        assert!(
            parse("[profile.x]\nendpoint = \"a\"", "x").is_err(),
            "unknown keys"
        );
    }

    #[test]
    fn flags_and_environment_win_over_the_profile() {
        let profile = parse(FILE, DEFAULT_PROFILE).unwrap();
        let given = Profile {
            api: None,
            token: Some("from-flag".into()),
        };
        let target = resolve(given, profile).unwrap();
        assert_eq!(
            target.api,
            "https://abc.execute-api.us-east-1.amazonaws.com/dev"
        );
        assert_eq!(target.token, "from-flag");
        let nothing = resolve(Profile::default(), Profile::default()).unwrap_err();
        assert!(nothing.to_string().contains("HERALD_API"), "{nothing}");
    }

    #[test]
    fn the_file_is_found_by_the_usual_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            file_path(env(&[
                ("HERALD_CONFIG", "/etc/h.toml"),
                ("HOME", "/home/a")
            ])),
            Some(PathBuf::from("/etc/h.toml"))
        );
        assert_eq!(
            file_path(env(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/home/a")])),
            Some(PathBuf::from("/x/herald/config.toml"))
        );
        assert_eq!(
            file_path(env(&[("HOME", "/home/a")])),
            Some(PathBuf::from("/home/a/.config/herald/config.toml"))
        );
        assert_eq!(file_path(env(&[])), None);
    }

    #[test]
    fn a_missing_file_is_empty_for_the_default_profile_only() {
        let path = Path::new("/nonexistent/herald/config.toml");
        assert_eq!(
            load(Some(path), DEFAULT_PROFILE).unwrap(),
            Profile::default()
        );
        assert!(load(Some(path), "staging").is_err());
    }
}
