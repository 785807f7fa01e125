//! Where a database's current schema version comes from: a file (its trimmed content) or
//! an HTTP URL (the trimmed body of a GET), read every `interval` while the database is
//! in the state. An unreadable source makes the version unknown, which holds every switch
//! of the services that use it (the guard cannot tell whether the color can run).

use std::sync::{Arc, RwLock};

use tracing::{info, warn};

use super::probe;
use super::schema::{SchemaVersion, Versions};
use crate::state::{Database, SchemaSource};

/// How long a URL source may take to answer.
pub const SOURCE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Longest schema version accepted from a source.
pub const MAX_VERSION_BYTES: usize = 256;

/// Reads `db`'s version every interval into `versions`, until aborted.
pub async fn follow(db: Database, versions: Arc<RwLock<Versions>>) {
    let mut ticks = tokio::time::interval(db.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let read = match read(&db.source).await {
            Ok(v) => SchemaVersion::Known(v),
            Err(why) => SchemaVersion::Unknown(why),
        };
        let mut map = versions.write().expect("bug: versions lock poisoned");
        let before = map.insert(db.name.clone(), read.clone());
        drop(map);
        if before.as_ref() != Some(&read) {
            match &read {
                SchemaVersion::Known(v) => {
                    info!(database = %db.name, version = %v, "schema version")
                }
                SchemaVersion::Unknown(why) => {
                    warn!(database = %db.name, reason = %why, "schema version unknown")
                }
            }
        }
    }
}

/// Every database's current version, read once (at start, and by `validate`/`diff`).
pub async fn read_all(state: &crate::state::DesiredState) -> Versions {
    let mut versions = Versions::new();
    for db in &state.databases {
        let v = match read(&db.source).await {
            Ok(v) => SchemaVersion::Known(v),
            Err(why) => SchemaVersion::Unknown(why),
        };
        versions.insert(db.name.clone(), v);
    }
    versions
}

/// One read of `source`.
pub async fn read(source: &SchemaSource) -> Result<String, String> {
    let bytes = match source {
        SchemaSource::File(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || read_file(&path))
                .await
                .map_err(|e| format!("reading the file failed: {e}"))??
        }
        SchemaSource::Url(url) => get(url).await?,
    };
    let text = String::from_utf8(bytes).map_err(|_| "the version is not UTF-8".to_owned())?;
    let version = text.trim();
    if version.is_empty() {
        return Err("the source is empty".into());
    }
    if version.len() > MAX_VERSION_BYTES || version.contains(char::is_whitespace) {
        return Err(format!(
            "the source does not hold one word of at most {MAX_VERSION_BYTES} bytes"
        ));
    }
    Ok(version.to_owned())
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    if meta.len() > 4096 {
        return Err(format!("{shown} is larger than 4 KiB"));
    }
    std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))
}

async fn get(url: &str) -> Result<Vec<u8>, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("no host in {url}"))?;
    let port = uri.port_u16().unwrap_or(80);
    let lookup = tokio::net::lookup_host((host.trim_matches(['[', ']']), port));
    let addr = tokio::time::timeout(SOURCE_TIMEOUT, lookup)
        .await
        .map_err(|_| format!("cannot resolve {host} within {SOURCE_TIMEOUT:?}"))?
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    match probe::get(addr, path, SOURCE_TIMEOUT).await {
        Ok((200, body)) => Ok(body),
        Ok((status, _)) => Err(format!("{url} answered {status}")),
        Err(e) => Err(format!("{url}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_source_gives_its_trimmed_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("version");
        std::fs::write(&path, "42\n").unwrap();
        let source = SchemaSource::File(path.clone());
        assert_eq!(read(&source).await, Ok("42".into()));
        std::fs::write(&path, "").unwrap();
        assert_eq!(read(&source).await, Err("the source is empty".into()));
        std::fs::remove_file(&path).unwrap();
        assert!(read(&source).await.unwrap_err().starts_with("cannot read"));
        assert!(
            read(&SchemaSource::File(dir.path().into()))
                .await
                .unwrap_err()
                .ends_with("is not a regular file")
        );
    }

    #[tokio::test]
    async fn an_unreachable_url_is_an_unknown_version_with_why() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = read(&SchemaSource::Url(format!("http://127.0.0.1:{port}/v")))
            .await
            .unwrap_err();
        assert!(err.contains("refused"), "{err}");
    }

    #[tokio::test]
    async fn a_url_source_gives_the_trimmed_body_of_a_get() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = vec![0; 1024];
            let n = conn.read(&mut request).await.unwrap();
            let request = String::from_utf8_lossy(&request[..n]).into_owned();
            conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n43\r\n")
                .await
                .unwrap();
            request
        });
        let read = read(&SchemaSource::Url(format!(
            "http://{addr}/schema?db=records"
        )))
        .await;
        assert_eq!(read, Ok("43".into()));
        let request = server.await.unwrap();
        assert!(
            request.starts_with("GET /schema?db=records HTTP/1.1\r\n"),
            "{request}"
        );
    }
}
