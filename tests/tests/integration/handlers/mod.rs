//! The functions' handlers on the in-memory ports (`herald_testkit`), fed with the files
//! of `events/`.

mod deadline;
mod deliver;
mod erase;
mod ingest;
mod manage;
mod per_host;
mod portal;
mod slow_lane;
