"""The local stack (Kafka in KRaft mode and Apicurio Registry) and the topic definitions."""
