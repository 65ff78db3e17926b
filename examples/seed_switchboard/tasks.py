# tasks.py: the seed project's README example, with Cloud.AWS changed to Cloud.LOCAL.
# (The seed README also uses DB without importing it; it is imported here.)

from switchboard import DB, Cloud, Context, Response, Task

import microservice


# In order to update the workflow state
# Wherever you place your business logic,
# You will need to update the context and send a response
def generic_response(context: Context):
    # initialize the db connection
    db = DB(Cloud.LOCAL)
    # update the context
    context.success = True
    context.completed = True
    # create the response object
    sb_response = Response(
            Cloud.LOCAL,
            db.interface,
            "my_first_workflow",
            context
    )
    # send the response to the invocation queue
    # this updates the workflow
    sb_response.send()


# for light tasks you can define business logic directly in the task's function.
def process_data(context: Context):
    # Your business logic here
    print("Processing some data...")
    # you can utilize the cache in the context to pass data between workflow components or downstream microservices
    context.cache["some_bool_field"] = True
    generic_response(context)
    return 200

def generate_report(context: Context):
    # Your business logic here
    print("Generating report...")
    generic_response(context)
    return 200

# most use cases will utilize microservices, you can trigger those in your defined tasks
def another_task(context: Context):
    # Call your microservice here
    microservice.trigger(context, generic_response)
    print("Task triggered!")
    # Your microservice will need to provide a response to the workflow
    return 200

task_map = {
    "process_data_task": Task(name="process_data_task", execute=process_data),
    "generate_report_task": Task(name="generate_report_task", execute=generate_report),
    "another_task": Task(name="another_task", execute=another_task),
}
directory_map = task_map
