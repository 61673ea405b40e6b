-- Post-quantum groups (issue #12, point 7): key packages are kept, counted
-- and claimed per MLS ciphersuite (its RFC 9420 registry value; 1 =
-- MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, every package stored before).
ALTER TABLE v2_key_packages ADD COLUMN ciphersuite INTEGER NOT NULL DEFAULT 1;
DROP INDEX v2_key_packages_device;
CREATE INDEX v2_key_packages_device ON v2_key_packages (device_id, ciphersuite, last_resort, id);
DROP INDEX v2_key_packages_one_last_resort;
CREATE UNIQUE INDEX v2_key_packages_one_last_resort ON v2_key_packages (device_id, ciphersuite)
    WHERE last_resort;
