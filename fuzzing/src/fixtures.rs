//! What the targets need once per process (a committee under a fixed setup, the shipped jobs,
//! the auditor's keys, a scratch directory) and the seed inputs the fuzzer starts from.

use fedbank_common::alerts::AuditorKeys;
use fedbank_common::audit::{EventKind, SigningIdentity, TrailWriter};
use fedbank_common::committee::{ContributionStatement, DecryptionRequest, MASK_DIGEST_LABEL};
use fedbank_common::digest::Digest;
use fedbank_common::endorsement::{ConsortiumTrust, Signed};
use fedbank_common::ids::{JobId, NodeId};
use fedbank_common::job::{JobSpec, ValidJob};
use fedbank_common::key_ceremony::{
    CommitmentSet, KeyBundle, RevealedShare, ShareCommitment, ShareReveal,
};
use fedbank_common::policy::MemberRecord;
use fedbank_common::protocol::{
    Contribution, ContributionCommitment, Hello, JobReleased, Notice, NoticeKind, RevealRequest,
    RoundRequest,
};
use fedbank_common::roster::{RevealStatement, Roster};
use fedbank_common::secagg::{
    Ciphertext, Encryptor, JointPublicKey, KeySetup, Profile, PublicKeyShare, SchemeParameters,
    SecretKeyShare,
};
use fedbank_common::wire::{self, WireMessage};
use fedbank_coordinator::{CoordinatorMachine, RoundAggregate};
use fedbank_participant::{CommitteeMember, MemberTerms};
use fedbank_transport::dev_pki::DevConsortium;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::SystemTime;

/// Values in the fixture's round.
pub(crate) const VALUES: u64 = 12;
/// The fixture's round number.
pub(crate) const ROUND: u32 = 3;
/// Contributors the fixture's committee policy requires.
pub(crate) const MIN_PARTICIPANTS: usize = 2;

/// The job files the project ships, parsed as every node parses them.
pub(crate) const JOB_FILES: &[&str] = &[
    include_str!("../../configs/simulate-stats.toml"),
    include_str!("../../configs/segment-cdnow.toml"),
    include_str!("../../configs/propensity-telco-dp.toml"),
    include_str!("../../configs/compliance-synthetic.toml"),
];

pub(crate) struct Fixtures {
    pub setup: KeySetup,
    pub params: SchemeParameters,
    pub shares: Vec<SecretKeyShare<u64>>,
    pub public_shares: Vec<PublicKeyShare<u64>>,
    pub joint: JointPublicKey<u64>,
    /// The consortium PKI of the fixture's nodes (m0, m1, p0, p1).
    pub pki: DevConsortium,
    /// The key ceremony's commitments and the bundle participants verify.
    pub bundle: KeyBundle<u64>,
    /// A valid contribution of `VALUES` values from `p0`.
    pub ciphertext: Ciphertext<u64>,
    /// The shipped jobs: stats, segment (transactions), propensity, compliance.
    pub jobs: Vec<ValidJob>,
    /// Where CSV inputs are written to be read back.
    pub scratch: PathBuf,
}

#[derive(serde::Deserialize)]
pub(crate) struct JobFile {
    pub job: JobSpec,
}

fn id(s: &str) -> NodeId {
    NodeId::new(s).unwrap_or_else(|e| panic!("fixture id {s}: {e}"))
}

pub(crate) fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let setup = KeySetup {
            job: JobId::new("fuzz").unwrap_or_else(|e| panic!("{e}")),
            key_epoch: 1,
            profile: Profile::Fast,
            mask_seed: 0xf022,
            committee: vec![id("m0"), id("m1")],
        };
        let params = SchemeParameters::new(Profile::Fast, 2, 8).unwrap_or_else(|e| panic!("{e}"));
        let shares: Vec<SecretKeyShare<u64>> = setup
            .committee
            .iter()
            .map(|m| SecretKeyShare::generate(&setup, m).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        let public_shares: Vec<_> = shares.iter().map(|s| s.public_share()).collect();
        let joint =
            JointPublicKey::combine(&setup, &public_shares).unwrap_or_else(|e| panic!("{e}"));
        let names = [id("m0"), id("m1"), id("p0"), id("p1")];
        let pki = DevConsortium::new(names.iter()).unwrap_or_else(|e| panic!("fixture PKI: {e}"));
        let signer = |n: &NodeId| pki.signer(n).unwrap_or_else(|e| panic!("{e}"));
        let commitments = CommitmentSet {
            setup: setup.clone(),
            commitments: public_shares
                .iter()
                .map(|p| {
                    signer(p.member()).sign(ShareCommitment {
                        setup: setup.digest(),
                        member: p.member().clone(),
                        share: p.digest(),
                    })
                })
                .collect(),
        };
        let set_digest = commitments.digest();
        let bundle = KeyBundle {
            shares: public_shares
                .iter()
                .map(|p| RevealedShare {
                    share: p.clone(),
                    reveal: signer(p.member()).sign(ShareReveal {
                        setup: setup.digest(),
                        member: p.member().clone(),
                        share: p.digest(),
                        commitments: set_digest,
                    }),
                })
                .collect(),
            commitments,
        };
        let slots: Vec<i128> = (0..VALUES as i128).map(|v| v * 7 - 30).collect();
        let ciphertext = Encryptor::new(joint.clone(), params.clone())
            .and_then(|e| e.encrypt(&slots))
            .unwrap_or_else(|e| panic!("{e}"));
        let jobs = JOB_FILES
            .iter()
            .map(|text| {
                toml::from_str::<JobFile>(text)
                    .unwrap_or_else(|e| panic!("shipped job file: {e}"))
                    .job
                    .validate()
                    .unwrap_or_else(|e| panic!("shipped job file: {e}"))
            })
            .collect();
        let scratch = std::env::temp_dir().join(format!("fedbank-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).unwrap_or_else(|e| panic!("{e}"));
        Fixtures {
            setup,
            params,
            shares,
            public_shares,
            joint,
            pki,
            bundle,
            ciphertext,
            jobs,
            scratch,
        }
    })
}

/// The auditor's keys (generated once; a few seconds).
pub(crate) fn auditor_keys() -> &'static AuditorKeys {
    static KEYS: OnceLock<AuditorKeys> = OnceLock::new();
    KEYS.get_or_init(|| AuditorKeys::generate().unwrap_or_else(|e| panic!("auditor keys: {e}")))
}

/// Digest of the fixture's job file, as its members hold it.
pub(crate) fn job_digest() -> Digest {
    Digest::of("fuzz", b"job")
}

impl Fixtures {
    /// The consortium CA of the fixture.
    pub fn trust(&self) -> ConsortiumTrust {
        self.pki.trust()
    }

    /// `participant`'s signed statement for `ciphertext` in the fixture's round.
    pub fn statement(
        &self,
        participant: &str,
        ciphertext: &Ciphertext<u64>,
    ) -> Signed<ContributionStatement> {
        let signer = self
            .pki
            .signer(&id(participant))
            .unwrap_or_else(|e| panic!("{e}"));
        signer.sign(ContributionStatement {
            job: self.setup.job.clone(),
            job_digest: job_digest(),
            key_epoch: self.setup.key_epoch,
            round: ROUND,
            attempt: 0,
            quantity: "fuzz".into(),
            value_count: ciphertext.value_count,
            computation: Digest::of("fuzz computation", participant.as_bytes()),
            mask_digest: Digest::of_scalars(MASK_DIGEST_LABEL, &ciphertext.masks),
            ciphertext_digest: ciphertext.digest(),
        })
    }

    /// `participant`'s signed reveal of its statement for `ciphertext` against `roster`.
    pub fn reveal(
        &self,
        participant: &str,
        ciphertext: &Ciphertext<u64>,
        roster: &Roster,
    ) -> Signed<RevealStatement> {
        let statement = self.statement(participant, ciphertext).statement;
        self.sign_reveal(&id(participant), RevealStatement::of(&statement, roster))
    }

    /// `reveal` signed by `participant`.
    pub fn sign_reveal(
        &self,
        participant: &NodeId,
        reveal: RevealStatement,
    ) -> Signed<RevealStatement> {
        self.pki
            .signer(participant)
            .unwrap_or_else(|e| panic!("{e}"))
            .sign(reveal)
    }

    /// An aggregate of the fixture's round: `p0` and `p1` committed, the roster fixed, and the
    /// valid contribution of `p0` revealed (`p1`'s is [`Self::second_ciphertext`]).
    pub fn aggregate(&self) -> RoundAggregate<u64> {
        let mut aggregate = RoundAggregate::new(self.setup.clone(), ROUND, "fuzz", VALUES);
        for (p, ct) in [("p0", &self.ciphertext), ("p1", self.second_ciphertext())] {
            aggregate
                .commit(id(p), self.statement(p, ct))
                .unwrap_or_else(|e| panic!("fixture commitment: {e}"));
        }
        let roster = self.roster(&mut aggregate);
        aggregate
            .add(
                id("p0"),
                self.ciphertext.clone(),
                self.reveal("p0", &self.ciphertext, &roster),
            )
            .unwrap_or_else(|e| panic!("fixture contribution: {e}"));
        aggregate
    }

    /// The roster of `aggregate`, fixed now if it was not.
    pub fn roster(&self, aggregate: &mut RoundAggregate<u64>) -> Roster {
        aggregate
            .fix_roster()
            .cloned()
            .unwrap_or_else(|| panic!("fixture roster: nothing committed"))
    }

    /// The terms the fixture's members serve under.
    pub fn terms(&self) -> MemberTerms {
        MemberTerms {
            min_participants: MIN_PARTICIPANTS,
            participants: vec![id("p0"), id("p1")],
            job_digest: job_digest(),
            trust: self.trust(),
        }
    }

    /// A fresh committee member `j` (an empty record).
    pub fn member(&self, j: usize) -> CommitteeMember<u64> {
        CommitteeMember::from_share(self.shares[j].clone(), self.params.clone(), &self.terms())
            .unwrap_or_else(|e| panic!("fixture member: {e}"))
    }

    /// A second valid contribution, from `p1`.
    pub fn second_ciphertext(&self) -> &'static Ciphertext<u64> {
        static SECOND: OnceLock<Ciphertext<u64>> = OnceLock::new();
        SECOND.get_or_init(|| {
            let slots: Vec<i128> = (0..VALUES as i128).map(|v| 3 - v).collect();
            Encryptor::new(self.joint.clone(), self.params.clone())
                .and_then(|e| e.encrypt(&slots))
                .unwrap_or_else(|e| panic!("{e}"))
        })
    }

    /// A valid decryption request for the fixture's round with two contributors.
    pub fn request(&self) -> DecryptionRequest<u64> {
        let mut aggregate = self.aggregate();
        let second = self.second_ciphertext();
        let roster = self.roster(&mut aggregate);
        aggregate
            .add(id("p1"), second.clone(), self.reveal("p1", second, &roster))
            .unwrap_or_else(|e| panic!("{e}"));
        aggregate
            .decryption_request(MIN_PARTICIPANTS)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

fn encoded<T: WireMessage>(message: &T) -> Vec<u8> {
    wire::encode(message).unwrap_or_else(|e| panic!("encoding a seed: {e}"))
}

/// The bytes a sender puts on a stream for `message`: header, body length, body.
fn on_stream(wire_bytes: &[u8]) -> Vec<u8> {
    let (header, body) = wire_bytes.split_at(wire::HEADER_LEN);
    let mut out = header.to_vec();
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Operations of the `parity` target: the stream in 300-byte pieces but the second, then the
/// parity datagrams (256-byte shards), first through the inbox and then to the assembly.
fn parity_seed(stream: &[u8]) -> Vec<u8> {
    let datagrams = fedbank_transport::fec::parity_datagrams(3, stream, 256, 4)
        .unwrap_or_else(|e| panic!("parity of a seed: {e}"));
    let mut out = Vec::new();
    for (i, piece) in stream.chunks(300).enumerate() {
        if i == 1 {
            continue;
        }
        out.push(0);
        out.extend_from_slice(&((i * 300) as u32).to_le_bytes());
        out.extend_from_slice(&(piece.len() as u16).to_le_bytes());
        out.extend_from_slice(piece);
    }
    for op in [2u8, 1] {
        for d in &datagrams {
            out.push(op);
            out.extend_from_slice(&(d.len() as u16).to_le_bytes());
            out.extend_from_slice(d);
        }
    }
    out
}

fn with_selector(selector: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![selector];
    out.extend_from_slice(bytes);
    out
}

/// Valid inputs for every target, from which the fuzzer mutates: `(target, input)`.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let f = fixtures();
    let job = f.setup.job.clone();
    let request = f.request();
    let partial = f
        .member(0)
        .handle(&request)
        .unwrap_or_else(|e| panic!("fixture partial: {e}"));
    let messages: Vec<Vec<u8>> = vec![
        encoded(&Hello {
            protocol: fedbank_common::protocol::PROTOCOL_VERSION,
            job: job.clone(),
            job_digest: Digest::of("fuzz", b"job"),
            data: Some(fedbank_common::protocol::DataCommitment {
                rows: 704,
                sha256: "ab".repeat(32),
                consent_sha256: None,
            }),
        }),
        encoded(&f.setup),
        encoded(&f.bundle.commitments.commitments[0]),
        encoded(&f.bundle.commitments),
        encoded(&f.bundle.shares[1]),
        encoded(&f.bundle),
        encoded(&RoundRequest {
            job: job.clone(),
            round: ROUND,
            attempt: 0,
            kind: fedbank_common::job::stats::moments_round(),
        }),
        encoded(&ContributionCommitment {
            round: ROUND,
            attempt: 0,
            statement: f.statement("p1", f.second_ciphertext()),
        }),
        encoded(&RevealRequest {
            roster: request.roster.clone(),
        }),
        encoded(&Contribution {
            round: ROUND,
            attempt: 0,
            ciphertext: f.second_ciphertext().clone(),
            reveal: f.reveal("p1", f.second_ciphertext(), &request.roster),
        }),
        encoded(&request),
        encoded(&partial),
        encoded(&JobReleased {
            job: job.clone(),
            release: fedbank_common::canonical::encode_body(
                &fedbank_common::job::segment::SegmentRelease {
                    reference_day: Some(10_000),
                    mean: vec![1.0, 2.0, 3.0],
                    std: vec![0.5, 0.5, 0.5],
                    centroids: vec![vec![0.0, 1.0, -1.0], vec![1.0, 0.0, 0.0]],
                    labels: vec!["champions".into(), "at risk".into()],
                },
            )
            .unwrap_or_else(|e| panic!("encoding a seed: {e}")),
        }),
        encoded(&Notice {
            job,
            round: Some(ROUND),
            kind: NoticeKind::Finished,
            text: "done".into(),
        }),
    ];
    let mut seeds = Vec::new();
    for m in &messages {
        seeds.push(("frame", on_stream(m)));
        seeds.push(("message", m.clone()));
    }
    // The largest message's stream with one piece lost and its parity, which rebuilds it.
    if let Some(largest) = messages.iter().max_by_key(|m| m.len()) {
        seeds.push(("parity", parity_seed(&on_stream(largest))));
    }
    seeds.push(("ciphertext", encoded(&f.ciphertext)));
    let mut member = f.member(0);
    let _ = member.handle(&request);
    let record: MemberRecord = member.record().clone();
    for (selector, bytes) in [
        (0u8, encoded(&f.setup)),
        (1, encoded(&f.public_shares[0])),
        (2, encoded(&f.joint)),
        (3, encoded(&f.shares[0])),
        (4, encoded(&record)),
    ] {
        seeds.push(("keys", with_selector(selector, &bytes)));
    }
    let keys = auditor_keys();
    let rates = fedbank_common::alerts::RatePublicKey::from_bytes(keys.public_key_bytes())
        .and_then(|k| k.encrypt_rates(&[120, 40, 9000, 0, 15]))
        .unwrap_or_else(|e| panic!("fixture rates: {e}"));
    seeds.push(("alert_bytes", with_selector(0, keys.public_key_bytes())));
    seeds.push(("alert_bytes", with_selector(1, &rates)));
    seeds.push(("trail", trail_seed()));
    for text in JOB_FILES {
        seeds.push(("config", with_selector(0, text.as_bytes())));
    }
    let checkpoint = CoordinatorMachine::<u64>::new(f.jobs[0].clone(), 7, f.trust()).checkpoint();
    let json = serde_json::to_vec(&checkpoint).unwrap_or_else(|e| panic!("{e}"));
    seeds.push(("config", with_selector(1, &json)));
    for (selector, text) in crate::targets::CSV_SEEDS {
        seeds.push(("csv_tables", with_selector(*selector, text.as_bytes())));
    }
    seeds
}

/// A scratch file of this thread (targets may run on several threads of one process).
pub(crate) fn scratch_file(name: &str) -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    fixtures().scratch.join(format!("{thread}-{name}"))
}

fn trail_seed() -> Vec<u8> {
    let path = scratch_file("seed.trail");
    let _ = std::fs::remove_file(&path);
    let (identity, _) = SigningIdentity::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut writer = TrailWriter::create(
        &path,
        &id("coordinator"),
        "coordinator",
        identity,
        SystemTime::now(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut fields = serde_json::Map::new();
    fields.insert("job".into(), "fuzz".into());
    fields.insert("round".into(), 1.into());
    writer
        .append(EventKind::RoundStarted, fields, SystemTime::now())
        .unwrap_or_else(|e| panic!("{e}"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_file(&path);
    bytes
}
