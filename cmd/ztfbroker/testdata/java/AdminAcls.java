// AdminAcls drives Apache Kafka's own Java AdminClient against a broker: the
// ACL and SCRAM-credential calls that Kafka's admin tools make. It prints one
// "ok <step> ..." line per step and exits non-zero at the first failure.
// Used by cmd/ztfbroker/javaadmin_test.go.

import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.admin.UserScramCredentialsDescription;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;

public class AdminAcls {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        try (Admin admin = Admin.create(p)) {
            AclBinding partners = new AclBinding(
                new ResourcePattern(ResourceType.TOPIC, "ztf_", PatternType.PREFIXED),
                new AccessControlEntry("User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW));
            AclBinding packager = new AclBinding(
                new ResourcePattern(ResourceType.TOPIC, "ztf_", PatternType.PREFIXED),
                new AccessControlEntry("User:packager", "*", AclOperation.WRITE, AclPermissionType.ALLOW));
            admin.createAcls(List.of(partners, packager)).all().get(30, TimeUnit.SECONDS);
            System.out.println("ok createAcls 2");

            Collection<AclBinding> all = admin.describeAcls(AclBindingFilter.ANY).values().get(30, TimeUnit.SECONDS);
            if (!all.contains(partners) || !all.contains(packager)) {
                throw new IllegalStateException("describeAcls lacks what was created: " + all);
            }
            System.out.println("ok describeAcls " + all.size());

            AclBindingFilter aliceOnly = new AclBindingFilter(
                new ResourcePatternFilter(ResourceType.TOPIC, "ztf_", PatternType.PREFIXED),
                new AccessControlEntryFilter("User:alice", null, AclOperation.ANY, AclPermissionType.ANY));
            Collection<AclBinding> deleted = admin.deleteAcls(List.of(aliceOnly)).all().get(30, TimeUnit.SECONDS);
            if (deleted.size() != 1 || !deleted.contains(partners)) {
                throw new IllegalStateException("deleteAcls deleted " + deleted);
            }
            Collection<AclBinding> left = admin.describeAcls(AclBindingFilter.ANY).values().get(30, TimeUnit.SECONDS);
            if (left.contains(partners) || !left.contains(packager)) {
                throw new IllegalStateException("after deleteAcls: " + left);
            }
            System.out.println("ok deleteAcls 1");

            admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion(
                "bob", new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), "bob-secret")))
                .all().get(30, TimeUnit.SECONDS);
            System.out.println("ok alterUserScramCredentials bob");

            Map<String, UserScramCredentialsDescription> users =
                admin.describeUserScramCredentials().all().get(30, TimeUnit.SECONDS);
            UserScramCredentialsDescription bob = users.get("bob");
            if (bob == null || bob.credentialInfos().stream().noneMatch(i -> i.mechanism() == ScramMechanism.SCRAM_SHA_512)) {
                throw new IllegalStateException("describeUserScramCredentials: " + users);
            }
            System.out.println("ok describeUserScramCredentials " + users.keySet());
        }
    }
}
