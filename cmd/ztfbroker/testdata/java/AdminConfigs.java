// AdminConfigs drives Apache Kafka's own Java AdminClient against a broker:
// the config, log-dir, producer and group calls that Kafka's tools and
// MirrorMaker make. It prints one "ok <step> ..." line per step and exits
// non-zero at the first failure. Used by cmd/ztfbroker/adminconfigs_test.go.
//
//   java AdminConfigs <bootstrap> <topic>

import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeProducersResult;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.ProducerState;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.serialization.StringSerializer;

public class AdminConfigs {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1];
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        try (Admin admin = Admin.create(p)) {
            admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get(30, TimeUnit.SECONDS);
            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);

            admin.incrementalAlterConfigs(Map.of(res, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "3600000"), AlterConfigOp.OpType.SET),
                new AlterConfigOp(new ConfigEntry("max.message.bytes", "500000"), AlterConfigOp.OpType.SET))))
                .all().get(30, TimeUnit.SECONDS);
            Config c = admin.describeConfigs(List.of(res)).all().get(30, TimeUnit.SECONDS).get(res);
            ConfigEntry rm = c.get("retention.ms");
            if (!"3600000".equals(rm.value()) || rm.source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG) {
                throw new AssertionError("retention.ms after incrementalAlterConfigs: " + rm);
            }
            System.out.println("ok incrementalAlterConfigs retention.ms=" + rm.value() + " source=" + rm.source());
            System.out.println("ok describeConfigs entries=" + c.entries().size()
                + " min.insync.replicas=" + c.get("min.insync.replicas").value()
                + " readOnly=" + c.get("min.insync.replicas").isReadOnly());

            try {
                admin.incrementalAlterConfigs(Map.of(res, List.of(
                    new AlterConfigOp(new ConfigEntry("segment.bytes", "1000"), AlterConfigOp.OpType.SET))))
                    .all().get(30, TimeUnit.SECONDS);
                throw new AssertionError("segment.bytes=1000 accepted");
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof InvalidConfigurationException)) throw e;
                System.out.println("ok refused segment.bytes=1000: " + e.getCause().getMessage());
            }

            Properties pp = new Properties();
            pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
            pp.put(ProducerConfig.ACKS_CONFIG, "all");
            try (KafkaProducer<String, String> prod = new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer())) {
                for (int i = 0; i < 10; i++) prod.send(new ProducerRecord<>(topic, 0, "k" + i, "v" + i)).get(30, TimeUnit.SECONDS);
            }
            TopicPartition tp = new TopicPartition(topic, 0);
            DescribeProducersResult.PartitionProducerState ps = admin.describeProducers(List.of(tp)).partitionResult(tp).get(30, TimeUnit.SECONDS);
            List<ProducerState> active = ps.activeProducers();
            if (active.size() != 1 || active.get(0).lastSequence() != 9) {
                throw new AssertionError("describeProducers: " + active);
            }
            System.out.println("ok describeProducers id=" + active.get(0).producerId() + " lastSequence=" + active.get(0).lastSequence());

            int node = admin.describeCluster().nodes().get(30, TimeUnit.SECONDS).iterator().next().id();
            Map<Integer, Map<String, LogDirDescription>> dirs = admin.describeLogDirs(List.of(node)).allDescriptions().get(30, TimeUnit.SECONDS);
            LogDirDescription d = dirs.get(node).values().iterator().next();
            long size = d.replicaInfos().get(tp).size();
            if (size <= 0 || !d.totalBytes().isPresent()) {
                throw new AssertionError("describeLogDirs: " + d);
            }
            System.out.println("ok describeLogDirs partitions=" + d.replicaInfos().size() + " size=" + size + " total=" + d.totalBytes().getAsLong());

            Collection<GroupListing> groups = admin.listGroups(new ListGroupsOptions()).all().get(30, TimeUnit.SECONDS);
            System.out.println("ok listGroups groups=" + groups.size());
        }
    }
}
