//! Tests of quorumlock against real `redis-server` processes started by the test kit.
//! One binary so the crate and its dependencies are linked once.

mod support;

mod acl;
mod bad_input;
mod basics;
mod construction;
mod faults;
mod fencing;
mod footprint;
mod guards;
mod hostile;
mod leaks;
mod line;
mod scenarios;
mod secrets;
mod service;
mod tls;
