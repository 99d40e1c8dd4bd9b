//! A 3-node Citus cluster on one machine: a coordinator and two workers, each a private cluster on a free port
//! with Citus preloaded, for the fan-in tests on a distributed PostgreSQL. Dropping it stops the nodes and removes
//! their files (also when a test panics). Citus is built by `.ci/run` (`../shared/citus/build.sh`).

use super::cluster::PrivateCluster;
use super::TestDb;

pub struct CitusCluster {
    pub coordinator: PrivateCluster,
    pub workers: Vec<PrivateCluster>,
}

impl CitusCluster {
    /// Starts a coordinator and two workers at once, each with `settings` (postgresql.conf lines) besides Citus's.
    pub fn start(settings: &str) -> CitusCluster {
        let mut nodes: Vec<PrivateCluster> = std::thread::scope(|scope| {
            let starting: Vec<_> = (0..3).map(|_| scope.spawn(|| start_node(settings))).collect();
            starting.into_iter().map(|node| node.join().expect("a Citus node starts")).collect()
        });
        let coordinator = nodes.remove(0);
        CitusCluster { coordinator, workers: nodes }
    }

    /// A fresh database on every node, Citus created in each and the workers added (as `citus_add_node` does for
    /// a new cluster); returned as the coordinator's database, which lite2pg is pointed at.
    pub async fn database(&self) -> TestDb {
        let db = TestDb::on(&self.coordinator.url("postgres")).await;
        for worker in &self.workers {
            connect(&worker.url("postgres")).await.batch_execute(&format!("CREATE DATABASE {}", db.name)).await.unwrap();
            connect(&worker.url(&db.name)).await.batch_execute("CREATE EXTENSION citus").await.unwrap();
        }
        let client = db.client().await;
        client.batch_execute("CREATE EXTENSION citus").await.unwrap();
        client.execute("SELECT citus_set_coordinator_host('127.0.0.1', $1)", &[&i32::from(self.coordinator.port)]).await.unwrap();
        for worker in &self.workers {
            client.execute("SELECT citus_add_node('127.0.0.1', $1)", &[&i32::from(worker.port)]).await.unwrap();
        }
        db
    }
}

fn start_node(settings: &str) -> PrivateCluster {
    let node = PrivateCluster::init_new().expect("Citus tests need PostgreSQL's server binaries (`bash .ci/run` installs them)");
    // Two-phase commit across nodes needs prepared transactions on every node.
    node.configure(&format!("shared_preload_libraries = 'citus'\nmax_prepared_transactions = 100\n{settings}"));
    node.start();
    node
}

async fn connect(url: &str) -> tokio_postgres::Client {
    lite2pg::pg::PgTarget::parse(url).unwrap().connect().await.unwrap()
}
