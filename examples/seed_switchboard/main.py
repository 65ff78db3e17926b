# main.py (your orchestrator's handler): the seed project's README example, with
# Cloud.AWS changed to Cloud.LOCAL.

from switchboard import InitWorkflow, Call, ParallelCall, Done, DB, Cloud, GetCache

def workflow_handler(context):
    # Initialize the database connection
    db = DB(Cloud.LOCAL)

    # Initialize the workflow with the context
    InitWorkflow(
        cloud=Cloud.LOCAL,
        name="my_first_workflow",
        db=db,
        context=context
    )

    # Retrieve data passed between workflow steps or from executed tasks
    data = GetCache()

    # Execute a single task and wait for it to complete
    Call("process_data_task")

    # Conditionally execute multiple tasks in parallel
    if data["some_bool_field"]:
        ParallelCall(
            "generate_report_task",
            "another_task"
        )

    # Mark the workflow as complete
    return Done()
