//! TOP (Taobao Open Platform) gateway simulator at `/router/rest`.
