//! A Redis Cluster's masters, found afresh from its seed nodes whenever `clear` or
//! `invalidate_prefix` scans: the keys live on every master, not only on the nodes
//! the tier was given.

use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ErrorKind, RedisResult, Value};

/// The cluster's masters as the first seed that answers `CLUSTER SLOTS` sees them now,
/// each as a client with that seed's settings (TLS, root certificates, user, password).
pub(super) async fn masters(
    seeds: &[Client],
    config: &AsyncConnectionConfig,
) -> RedisResult<Vec<Client>> {
    let mut last = None;
    for seed in seeds {
        let slots = async {
            let mut connection = seed
                .get_multiplexed_async_connection_with_config(config)
                .await?;
            redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async::<Value>(&mut connection)
                .await
        }
        .await;
        match slots.and_then(|reply| master_addresses(&reply, host(seed)?)) {
            Ok(addresses) => {
                return addresses
                    .into_iter()
                    .map(|(host, port)| at(seed, host, port))
                    .collect();
            }
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| (ErrorKind::InvalidClientConfig, "no cluster nodes").into()))
}

/// The host a seed is reached at.
fn host(seed: &Client) -> RedisResult<&str> {
    match seed.get_connection_info().addr() {
        ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => Ok(host),
        _ => Err(not_tcp()),
    }
}

/// A client for the node at `host:port`, with `seed`'s settings.
fn at(seed: &Client, host: String, port: u16) -> RedisResult<Client> {
    let info = seed.get_connection_info();
    let addr = match info.addr() {
        ConnectionAddr::Tcp(..) => ConnectionAddr::Tcp(host, port),
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => return Err(not_tcp()),
    };
    Client::open(info.clone().set_addr(addr))
}

fn not_tcp() -> redis::RedisError {
    (
        ErrorKind::InvalidClientConfig,
        "a cluster node needs a TCP address",
    )
        .into()
}

/// The masters in a `CLUSTER SLOTS` reply (the first node of each slot range), each
/// once. A master without a known endpoint (`NULL`, empty or `?`) is at the host of
/// the node that answered, `answering`.
fn master_addresses(reply: &Value, answering: &str) -> RedisResult<Vec<(String, u16)>> {
    let unexpected = || {
        redis::RedisError::from((
            ErrorKind::UnexpectedReturnType,
            "CLUSTER SLOTS answered with an unexpected shape",
        ))
    };
    let Value::Array(ranges) = reply else {
        return Err(unexpected());
    };
    let mut masters = Vec::new();
    for range in ranges {
        let Value::Array(range) = range else {
            return Err(unexpected());
        };
        let Some(Value::Array(master)) = range.get(2) else {
            return Err(unexpected());
        };
        let host = match master.first() {
            Some(Value::BulkString(host)) => String::from_utf8_lossy(host).into_owned(),
            Some(Value::SimpleString(host)) => host.clone(),
            Some(Value::Nil) => String::new(),
            _ => return Err(unexpected()),
        };
        let host = if host.is_empty() || host == "?" {
            answering.to_owned()
        } else {
            host
        };
        let Some(Value::Int(port)) = master.get(1) else {
            return Err(unexpected());
        };
        let port = u16::try_from(*port).map_err(|_| unexpected())?;
        if !masters.contains(&(host.clone(), port)) {
            masters.push((host, port));
        }
    }
    Ok(masters)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: Value, port: i64) -> Value {
        Value::Array(vec![
            host,
            Value::Int(port),
            Value::BulkString(b"0123abcd".to_vec()),
        ])
    }

    fn range(start: i64, end: i64, nodes: Vec<Value>) -> Value {
        let mut range = vec![Value::Int(start), Value::Int(end)];
        range.extend(nodes);
        Value::Array(range)
    }

    #[test]
    fn the_masters_are_the_first_node_of_each_range_each_once() {
        let host = |h: &str| Value::BulkString(h.as_bytes().to_vec());
        let reply = Value::Array(vec![
            range(
                0,
                99,
                vec![node(host("10.0.0.1"), 7000), node(host("10.0.0.9"), 7009)],
            ),
            range(100, 199, vec![node(host("10.0.0.2"), 7001)]),
            range(200, 299, vec![node(host("10.0.0.1"), 7000)]),
            range(300, 399, vec![node(Value::Nil, 7002)]),
            range(400, 16383, vec![node(host("?"), 7003)]),
        ]);
        assert_eq!(
            master_addresses(&reply, "seed.local").unwrap(),
            [
                ("10.0.0.1".to_owned(), 7000),
                ("10.0.0.2".to_owned(), 7001),
                ("seed.local".to_owned(), 7002),
                ("seed.local".to_owned(), 7003),
            ]
        );
    }

    #[test]
    fn an_unexpected_reply_is_an_error_not_an_empty_cluster() {
        assert!(master_addresses(&Value::Okay, "seed").is_err());
        let no_node = Value::Array(vec![Value::Array(vec![Value::Int(0), Value::Int(1)])]);
        assert!(master_addresses(&no_node, "seed").is_err());
    }

    #[test]
    fn a_master_keeps_its_seeds_scheme_and_credentials() {
        let seed = Client::open("redis://user:secret@127.0.0.1:7000/").unwrap();
        let master = at(&seed, "127.0.0.2".into(), 7001).unwrap();
        let info = master.get_connection_info();
        assert_eq!(info.addr().to_string(), "127.0.0.2:7001");
        assert_eq!(info.redis_settings().username(), Some("user"));
        assert_eq!(info.redis_settings().password(), Some("secret"));
    }

    #[cfg(feature = "redis-tls")]
    #[test]
    fn a_master_of_a_tls_cluster_is_reached_over_tls() {
        let seed = Client::open("rediss://:secret@seed.local:7000/").unwrap();
        let master = at(&seed, "10.0.0.2".into(), 7001).unwrap();
        let info = master.get_connection_info();
        assert!(matches!(
            info.addr(),
            ConnectionAddr::TcpTls { host, port: 7001, insecure: false, .. } if host == "10.0.0.2"
        ));
        assert_eq!(info.redis_settings().password(), Some("secret"));
    }
}
