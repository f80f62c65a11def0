// Compacted drives Apache Kafka's own Java clients against a compacted
// topic, as Kafka Connect and MirrorMaker 2 use theirs.
//
//	Compacted produce BOOTSTRAP TOPIC  creates TOPIC with cleanup.policy=compact
//	    and writes keyed records (and tombstones) in rounds, each with its own
//	    codec and a segment.ms apart, printing "rec OFFSET KEY VALUE|NULL";
//	Compacted consume BOOTSTRAP TOPIC  reads it from the start to its end,
//	    printing "got OFFSET KEY VALUE|NULL" and "end POSITION".
//
// Used by cmd/ztfbroker/compact_test.go.

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.concurrent.Future;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class Compacted {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[1], topic = args[2];
        if (args[0].equals("produce")) {
            produce(bootstrap, topic);
        } else {
            consume(bootstrap, topic);
        }
    }

    static void produce(String bootstrap, String topic) throws Exception {
        Properties a = new Properties();
        a.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(a)) {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1).configs(Map.of(
                "cleanup.policy", "compact", "segment.ms", "100", "min.cleanable.dirty.ratio", "0.01")))).all().get();
        }
        Random rng = new Random(7);
        for (String codec : new String[] {"zstd", "snappy", "none"}) {
            Properties p = new Properties();
            p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
            p.put(ProducerConfig.LINGER_MS_CONFIG, "20");
            p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
                List<Future<RecordMetadata>> sent = new ArrayList<>();
                List<String[]> kv = new ArrayList<>();
                for (int i = 0; i < 60; i++) {
                    String key = "connector-" + rng.nextInt(10);
                    String value = rng.nextInt(8) == 0 ? null : codec + "-" + i;
                    sent.add(producer.send(new ProducerRecord<>(topic, key, value)));
                    kv.add(new String[] {key, value == null ? "NULL" : value});
                }
                producer.flush();
                for (int i = 0; i < sent.size(); i++) {
                    System.out.println("rec " + sent.get(i).get().offset() + " " + kv.get(i)[0] + " " + kv.get(i)[1]);
                }
            }
            Thread.sleep(150); // past segment.ms: the next round rolls a segment
        }
    }

    static void consume(String bootstrap, String topic) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p)) {
            TopicPartition tp = new TopicPartition(topic, 0);
            consumer.assign(List.of(tp));
            consumer.seekToBeginning(List.of(tp));
            long end = consumer.endOffsets(List.of(tp)).get(tp);
            long deadline = System.currentTimeMillis() + 30000;
            while (consumer.position(tp) < end && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    System.out.println("got " + r.offset() + " " + r.key() + " " + (r.value() == null ? "NULL" : r.value()));
                }
            }
            System.out.println("end " + consumer.position(tp));
        }
    }
}
