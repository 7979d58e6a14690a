"""The versions of the Java components the local stack runs: change them here and only here."""

KAFKA_VERSION = "4.1.1"
#: Kafka 4.x logs through log4j2 but its POM does not bring an implementation.
LOG4J_VERSION = "2.24.3"
APICURIO_VERSION = "3.0.9"
APICURIO_ARTIFACT = f"io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all"
