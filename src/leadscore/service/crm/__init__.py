"""CRM sync: HubSpot contacts and Salesforce Leads, driven from the durable outbox."""
from leadscore.service.crm.base import CrmClient, ItemResult, PushResult, SyncItem
from leadscore.service.crm.hubspot import CrmSetupError, HubSpotClient
from leadscore.service.crm.mapping import HUBSPOT_DEFAULT, SALESFORCE_DEFAULT, FieldMapping
from leadscore.service.crm.salesforce import SalesforceClient
from leadscore.service.crm.sync import (CrmReport, CrmSyncWorker, CrmTarget, add_crm_target, build_client,
                                        list_crm_targets, set_crm_target_enabled, token_env_var)

__all__ = ["CrmClient", "ItemResult", "PushResult", "SyncItem", "CrmSetupError", "HubSpotClient", "HUBSPOT_DEFAULT",
           "SALESFORCE_DEFAULT", "FieldMapping", "SalesforceClient", "CrmReport", "CrmSyncWorker", "CrmTarget",
           "add_crm_target", "build_client", "list_crm_targets", "set_crm_target_enabled", "token_env_var"]
